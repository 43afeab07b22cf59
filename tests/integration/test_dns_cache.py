"""The shared cache in front of real DNS: one query per answer and TTL."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from spf_milter.dnsclient.cache import DnsCache, NotCached
from spf_milter.dnsclient.resolver import DnsLookup, parse_nameserver
from spf_milter.runner import run_now
from spf_milter.spf import DnsServerFailure, SpfResult, check_host

pytestmark = pytest.mark.integration

ZONE = """\
$TTL 300
$ORIGIN example.org.
@      TXT "v=spf1 mx -all"
@      MX  10 mx1
mx1    A   192.0.2.1
;! servfail broken
"""


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer(Zone.from_text(ZONE)) as dns:
        yield dns


def _lookup(server: DnsServer, cache: DnsCache) -> DnsLookup:
    return DnsLookup(
        [parse_nameserver(f"127.0.0.1:{server.port}")], timeout=2, cache=cache
    )


def test_a_burst_of_connections_forging_one_domain_sends_one_query(
    server: DnsServer,
) -> None:
    lookup = _lookup(server, DnsCache())

    async def burst() -> list[list[bytes]]:
        return await asyncio.gather(*(lookup.txt("example.org") for _ in range(100)))

    assert asyncio.run(burst()) == [[b"v=spf1 mx -all"]] * 100
    assert server.query_count == 1


def test_answers_negative_answers_and_failures_are_cached(server: DnsServer) -> None:
    cache = DnsCache()
    lookup = _lookup(server, cache)

    async def twice() -> None:
        for _ in range(2):
            assert await lookup.mx("example.org") == ["mx1.example.org"]
            assert await lookup.a("missing.example.org") == []  # NXDOMAIN
            assert await lookup.aaaa("mx1.example.org") == []  # no data
            with pytest.raises(DnsServerFailure):
                await lookup.txt("broken.example.org")

    asyncio.run(twice())
    assert server.query_count == 4
    assert cache.stats.hits == 4
    ttls = {
        key: round(entry.expires - cache.clock())
        for key, entry in cache._entries.items()
    }
    assert ttls[("MX", "example.org")] == 300
    assert ttls[("A", "missing.example.org")] == 60  # the SOA's negative TTL
    assert ttls[("TXT", "broken.example.org")] == 2  # errors only briefly


def test_a_fully_cached_check_runs_without_an_event_loop(server: DnsServer) -> None:
    lookup = _lookup(server, DnsCache())
    ip = ipaddress.ip_address("192.0.2.1")
    warm = asyncio.run(check_host(lookup, ip, "example.org", "a@example.org"))
    cached = lookup.cached_only()
    assert cached is not None
    queries = server.query_count
    # No event loop runs in this thread here: the check must not need one.
    again = run_now(check_host(cached, ip, "example.org", "a@example.org"))
    assert (
        (again.result, again.mechanism)
        == (warm.result, warm.mechanism)
        == (
            SpfResult.PASS,
            "mx",
        )
    )
    assert server.query_count == queries
    with pytest.raises(NotCached):
        run_now(check_host(cached, ip, "other.example.org", "a@other.example.org"))
