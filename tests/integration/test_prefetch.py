"""Prefetching over real DNS: independent terms cost one round trip, not one each.

A record with three includes, each of whose names the loopback DNS server
answers after a delay: evaluated in order, a client that matches none of
them waits for the record and then for each include in turn; with
prefetching, for the record and then for the three at once. The result and
the counts are the same either way, and each name is asked for once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from spf_milter.dnsclient.cache import DnsCache
from spf_milter.dnsclient.resolver import DnsLookup, Nameserver
from spf_milter.runner import Prefetcher, run_now
from spf_milter.spf import CheckResult, SpfResult, check_host

pytestmark = pytest.mark.integration

DELAY = 0.3  # seconds for every answer about the names below
INCLUDES = ("a.example.org", "b.example.org", "c.example.org")
CLIENT = ipaddress.IPv4Address("203.0.113.7")  # in none of the includes


@pytest.fixture
def server() -> Iterator[DnsServer]:
    zone = Zone()
    zone.add_txt(
        "example.org",
        b"v=spf1 "
        + b" ".join(b"include:" + n.encode() for n in INCLUDES)
        + b" mx -all",
    )
    zone.add_mx("example.org", 10, "mx.example.org")
    zone.add_a("mx.example.org", "192.0.2.25")
    for number, name in enumerate(INCLUDES, start=1):
        zone.add_txt(name, f"v=spf1 ip4:192.0.2.{number} -all".encode())
    for name in ("example.org", *INCLUDES, "mx.example.org"):
        zone.set_delay(name, DELAY)
    with DnsServer(zone) as dns:
        yield dns


def check(server: DnsServer, *, prefetch: bool) -> tuple[CheckResult, float]:
    lookup = DnsLookup(
        [Nameserver("127.0.0.1", server.port)], timeout=10.0, cache=DnsCache()
    )
    prefetcher = Prefetcher() if prefetch else None
    started = time.monotonic()
    result = asyncio.run(
        check_host(lookup, CLIENT, "example.org", "x@example.org", prefetch=prefetcher)
    )
    return result, time.monotonic() - started


def test_independent_terms_take_one_round_trip(server: DnsServer) -> None:
    result, _ = check(server, prefetch=True)
    assert result.result is SpfResult.FAIL
    # The record, then the three includes and the MX together, then the MX
    # host's address: three rounds instead of six. The four were all sent
    # before the first of them was answered (a count, whatever the load).
    assert server.delayed_peak == 4
    asked = Counter((query.name, query.rdtype) for query in server.queries)
    assert all(count == 1 for count in asked.values()), asked
    assert set(asked) == {
        ("example.org", "TXT"),
        *((name, "TXT") for name in INCLUDES),
        ("example.org", "MX"),
        ("mx.example.org", "A"),
    }


def test_without_prefetch_each_term_waits_for_the_one_before(
    server: DnsServer,
) -> None:
    result, elapsed = check(server, prefetch=False)
    assert result.result is SpfResult.FAIL
    assert server.delayed_peak == 1
    assert elapsed >= 6 * DELAY, elapsed


def test_prefetching_changes_neither_result_nor_counts(server: DnsServer) -> None:
    with_prefetch, _ = check(server, prefetch=True)
    without, _ = check(server, prefetch=False)
    assert with_prefetch == without
    assert with_prefetch.lookups == 4  # three includes and the mx


def test_a_warm_check_starts_no_prefetch(server: DnsServer) -> None:
    cache = DnsCache()
    lookup = DnsLookup(
        [Nameserver("127.0.0.1", server.port)], timeout=10.0, cache=cache
    )
    prefetcher = Prefetcher()
    first = asyncio.run(
        check_host(lookup, CLIENT, "example.org", "x@example.org", prefetch=prefetcher)
    )
    sent = server.query_count
    # Answered from the cache alone, in this thread, without an event loop.
    again = run_now(
        check_host(lookup, CLIENT, "example.org", "x@example.org", prefetch=prefetcher)
    )
    assert again == first
    assert server.query_count == sent
