"""Memory is bounded by bytes against hostile zones, through real DNS on loopback.

A zone owner chooses how large each record is (one TCP answer holds 64 kB)
and how many distinct ones a client makes us see (one per MAIL FROM). The
DNS cache and the memo of parsed records (spf.Memo, as the daemon's runner
holds one) must hold their bytes whatever the count; this test feeds them
many distinct records of the largest size.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from spf_milter.dnsclient.cache import DnsCache
from spf_milter.dnsclient.resolver import DnsLookup, Nameserver
from spf_milter.spf import Limits, Memo, SpfResult, check_host
from spf_milter.spf.memo import RECORD_MEMO_BYTES

pytestmark = pytest.mark.integration

CLIENT = ipaddress.ip_address("192.0.2.10")
RECORDS = 60
CACHE_BYTES = 2 * 1024 * 1024  # 30 answers of 64 kB
# One such record parsed costs 4.7 MB: 60 of them, kept by count, 280 MB.
RSS_GROWTH_BOUND = 150 * 1024 * 1024


def _record(n: int) -> bytes:
    terms = b" ".join([b"mx:%{d}.x"] * 6_300)
    return b"v=spf1 ip4:192.0.2.10 exists:n%d.example " % n + terms


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    zone = Zone()
    for n in range(RECORDS):
        zone.add_txt(f"n{n}.big.test", _record(n))
    with DnsServer(zone) as dns_server:
        yield dns_server


def _rss() -> int:
    status = Path("/proc/self/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None
    return int(found.group(1)) * 1024


def test_distinct_records_of_64_kb_stay_within_the_byte_bounds(
    server: DnsServer,
) -> None:
    cache = DnsCache(max_bytes=CACHE_BYTES)
    lookup = DnsLookup([Nameserver("127.0.0.1", server.port)], timeout=5, cache=cache)
    limits = Limits(time_limit=10)
    memo = Memo()

    async def run() -> list[SpfResult]:
        results = []
        for n in range(RECORDS):
            domain = f"n{n}.big.test"
            checked = await check_host(
                lookup, CLIENT, domain, f"a@{domain}", limits=limits, memo=memo
            )
            results.append(checked.result)
            assert cache.bytes <= CACHE_BYTES
            assert memo.records.bytes <= RECORD_MEMO_BYTES
        return results

    before = _rss()
    results = asyncio.run(run())
    assert results == [SpfResult.PASS] * RECORDS
    assert _rss() - before < RSS_GROWTH_BOUND
    assert len(cache) < RECORDS
    assert len(memo.records) < RECORDS
