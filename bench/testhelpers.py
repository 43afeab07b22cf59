"""The helpers of tests/ that the benchmarks use, in one place.

The benchmarks drive the milter and serve DNS with the very code the tests
use (one milter protocol client, one DNS server and zone model), so that a
fix to either reaches both. Every bench/ module takes them from here and
from nowhere else.

The helpers live in the package ``tests/helpers/`` and the MTA fixtures in
``tests/mta/``, which import each other as ``helpers`` and ``mta`` (pytest
puts tests/ on ``sys.path``), so this module puts tests/ on ``sys.path``
once, the only path setting in bench/.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from helpers.dnsserver import DnsServer, Transport  # noqa: E402
from helpers.dnszone import Mx, Rdata, Resolution, Zone, normalize  # noqa: E402
from helpers.milterclient import Endpoint, MilterSession  # noqa: E402
from helpers.milterwire import (  # noqa: E402
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
    Negotiated,
    ProtocolError,
    Reply,
    Stage,
    Step,
    Verdict,
    connect_data,
    strings,
)
from helpers.pyspfzone import zone_lookup  # noqa: E402
from mta.postfix import PostfixInstance  # noqa: E402

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
    "Negotiated",
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
