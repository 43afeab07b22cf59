"""Shared pytest fixtures.

pytest puts this directory (tests/) on sys.path when it imports this file,
so tests import the shared helpers as top-level modules: dnszone,
fakelookup, dnsserver.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dnsserver import DnsServer
from dnszone import Zone


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A loopback DNS server with an empty zone; set ``dns_server.zone``."""
    with DnsServer(Zone()) as server:
        yield server
