"""Shared pytest fixtures.

pytest puts this directory (tests/) on sys.path when it imports this file,
so tests import the shared helpers from the ``helpers`` package
(``from helpers.dnsserver import DnsServer``) and the MTA drivers from the
``mta`` package.
"""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis
import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone

# A test asserts behaviour, not the machine's speed: no per-example deadline,
# which a busy machine misses on any example (the bounds on work that matter
# are asserted by the tests of hostile input, as ratios).
hypothesis.settings.register_profile("spf-milter", deadline=None)
hypothesis.settings.load_profile("spf-milter")


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A loopback DNS server with an empty zone; set ``dns_server.zone``."""
    with DnsServer(Zone()) as server:
        yield server
