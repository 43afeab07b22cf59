"""The helpers of tests/ that the benchmarks use, in one place.

The benchmarks drive the milter and serve DNS with the very code the tests
use (one milter protocol client, one DNS server and zone model), so that a
fix to either reaches both. Every bench/ module takes them from here and
from nowhere else.

tests/ is not a package: its loose helper modules import one another by
their top-level names (``import milterwire``), so this module puts tests/
on ``sys.path`` once, the only path setting in bench/. When the helpers
live in a package of their own (``tests/helpers/``), the imports below
become ``from tests.helpers.milterclient import ...`` (the repository root
is on ``sys.path`` through ``python -m bench.NAME``) and only this file
changes; ``mta.postfix`` still needs tests/ on the path for as long as
tests/mta/ imports itself as ``mta``.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from dnsserver import DnsServer, Transport  # noqa: E402
from dnszone import Mx, Rdata, Resolution, Zone, normalize  # noqa: E402
from milterclient import Endpoint, MilterSession  # noqa: E402
from milterwire import (  # noqa: E402
    BODY_CHUNK,
    SMFIC_BODY,
    SMFIC_BODYEOB,
    SMFIC_CONNECT,
    SMFIC_DATA,
    SMFIC_EOH,
    SMFIC_HEADER,
    SMFIC_HELO,
    SMFIC_MAIL,
    SMFIC_RCPT,
    ProtocolError,
    Reply,
    Stage,
    Step,
    Verdict,
    connect_data,
    strings,
)
from mta.postfix import PostfixInstance  # noqa: E402
from pyspfzone import zone_lookup  # noqa: E402

__all__ = [
    "BODY_CHUNK",
    "SMFIC_BODY",
    "SMFIC_BODYEOB",
    "SMFIC_CONNECT",
    "SMFIC_DATA",
    "SMFIC_EOH",
    "SMFIC_HEADER",
    "SMFIC_HELO",
    "SMFIC_MAIL",
    "SMFIC_RCPT",
    "DnsServer",
    "Endpoint",
    "MilterSession",
    "Mx",
    "PostfixInstance",
    "ProtocolError",
    "Rdata",
    "Reply",
    "Resolution",
    "Stage",
    "Step",
    "Transport",
    "Verdict",
    "Zone",
    "connect_data",
    "normalize",
    "strings",
    "zone_lookup",
]
