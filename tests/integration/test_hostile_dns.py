"""Hostile DNS, served for real on loopback: the RFC's result, in time, every case.

Each case is checked through the daemon's own DNS layer (DnsLookup over UDP
and TCP to a server on 127.0.0.1) with a short per-query timeout and time
limit, and must end within that limit. Some answers no honest server
sends (garbage, a mismatched id, a truncated answer with no TCP behind it)
come from a server subclass that tampers with its replies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from dnsserver import DnsServer, Transport
from dnszone import Zone
from spf_milter.dnscache import DnsCache
from spf_milter.resolver import DnsLookup, Nameserver
from spf_milter.spf import CheckResult, Limits, SpfResult, check_host

pytestmark = pytest.mark.integration

CLIENT = ipaddress.ip_address("192.0.2.10")
QUERY_TIMEOUT = 1.0
TIME_LIMIT = 2.0
SLACK = 0.5  # scheduling, thread start-up


def _zone() -> Zone:
    zone = Zone()
    txt = zone.add_txt
    txt("include-loop.test", b"v=spf1 include:include-loop.test -all")
    txt("redirect-a.test", b"v=spf1 redirect=redirect-b.test")
    txt("redirect-b.test", b"v=spf1 redirect=redirect-a.test")
    for n in range(20):
        txt(f"chain{n}.test", f"v=spf1 include:chain{n + 1}.test -all".encode())
    txt("chain20.test", b"v=spf1 +all")
    eleven = " ".join(f"a:h{n}.test" for n in range(11))
    txt("eleven-terms.test", f"v=spf1 {eleven} -all".encode())
    for n in range(11):
        zone.add_a(f"h{n}.test", "198.51.100.1")
    txt("three-voids.test", b"v=spf1 a:v1.test a:v2.test a:v3.test -all")
    txt("twenty-mx.test", b"v=spf1 mx -all")
    for n in range(20):
        zone.add_mx("twenty-mx.test", n, f"mx{n}.test")
    zone.add_cname("cname-chain.test", "cname1.test")
    for n in range(1, 5):
        zone.add_cname(f"cname{n}.test", f"cname{n + 1}.test")
    txt("cname5.test", b"v=spf1 ip4:192.0.2.0/24 -all")
    zone.add_cname("cname-loop.test", "cname-loop2.test")
    zone.add_cname("cname-loop2.test", "cname-loop.test")
    networks = " ".join(f"ip4:10.{n // 256}.{n % 256}.0/24" for n in range(3000))
    txt("sixty-kb.test", f"v=spf1 {networks} ip4:192.0.2.10 -all".encode())
    txt("two-records.test", b"v=spf1 -all")
    txt("two-records.test", b"v=spf1 +all")
    zone.set_servfail("servfail.test")
    zone.set_refused("refused.test")
    zone.set_timeout("silent.test")
    zone.set_delay("late.test", TIME_LIMIT * 2)
    txt("late.test", b"v=spf1 +all")
    for name in ("tc-only.test", "garbage.test", "mismatch.test", "other-name.test"):
        txt(name, b"v=spf1 +all")
    return zone


class HostileDnsServer(DnsServer):
    """The test DNS server, with names for which it answers what no server should."""

    async def reply(self, wire: bytes, transport: Transport) -> bytes | None:
        answer = await super().reply(wire, transport)
        name = _question_name(wire)
        if answer is None or name is None:
            return answer
        tamper = TAMPER.get(name)
        return tamper(answer, transport) if tamper else answer


def _question_name(wire: bytes) -> str | None:
    import dns.exception
    import dns.message

    try:
        return str(dns.message.from_wire(wire).question[0].name).rstrip(".").lower()
    except (dns.exception.DNSException, IndexError):
        return None


def _truncated_udp_nothing_over_tcp(
    answer: bytes, transport: Transport
) -> bytes | None:
    if transport == "tcp":
        return None  # never answers over TCP
    flags = int.from_bytes(answer[2:4], "big") | 0x0200  # TC
    header = answer[:2] + flags.to_bytes(2, "big") + answer[4:6] + bytes(6)
    return header + answer[12 : 12 + _question_length(answer)]


def _question_length(answer: bytes) -> int:
    pos = 12
    while answer[pos]:
        pos += answer[pos] + 1
    return pos + 1 + 4 - 12


TAMPER: dict[str, Callable[[bytes, Transport], bytes | None]] = {
    "tc-only.test": _truncated_udp_nothing_over_tcp,
    "garbage.test": lambda answer, _: os.urandom(len(answer)),
    "mismatch.test": lambda answer, _: bytes([answer[0] ^ 0xFF]) + answer[1:],
    "other-name.test": lambda answer, _: answer.replace(b"other-name", b"OTHER-NAMF"),
}


@dataclass(frozen=True)
class Case:
    domain: str
    result: SpfResult
    problem: str | None = None  # a piece of the expected problem text


CASES = [
    Case("include-loop.test", SpfResult.PERMERROR, "more than 10 DNS-querying terms"),
    Case("redirect-a.test", SpfResult.PERMERROR, "more than 10 DNS-querying terms"),
    Case("chain0.test", SpfResult.PERMERROR, "more than 10 DNS-querying terms"),
    Case("eleven-terms.test", SpfResult.PERMERROR, "more than 10 DNS-querying terms"),
    Case("three-voids.test", SpfResult.PERMERROR, "more than 2 void lookups"),
    Case("twenty-mx.test", SpfResult.PERMERROR, "20 MX records"),
    Case("cname-chain.test", SpfResult.PASS),
    Case("cname-loop.test", SpfResult.TEMPERROR),
    Case("sixty-kb.test", SpfResult.PASS),
    Case("two-records.test", SpfResult.PERMERROR, "2 SPF records"),
    Case("servfail.test", SpfResult.TEMPERROR),
    Case("refused.test", SpfResult.TEMPERROR),
    Case("silent.test", SpfResult.TEMPERROR),
    Case("late.test", SpfResult.TEMPERROR),
    Case("tc-only.test", SpfResult.TEMPERROR),
    Case("garbage.test", SpfResult.TEMPERROR),
    Case("mismatch.test", SpfResult.TEMPERROR),
    Case("other-name.test", SpfResult.TEMPERROR),
]


@pytest.fixture(scope="module")
def server() -> Iterator[HostileDnsServer]:
    with HostileDnsServer(_zone()) as dns_server:
        yield dns_server


def _lookup(server: DnsServer) -> DnsLookup:
    return DnsLookup([Nameserver("127.0.0.1", server.port)], timeout=QUERY_TIMEOUT)


def _check(lookup: DnsLookup, domain: str) -> CheckResult:
    return asyncio.run(
        check_host(
            lookup, CLIENT, domain, f"a@{domain}", limits=Limits(time_limit=TIME_LIMIT)
        )
    )


@pytest.mark.parametrize("case", CASES, ids=[case.domain for case in CASES])
def test_hostile_dns_gives_the_rfc_result_in_time(
    server: HostileDnsServer, case: Case
) -> None:
    started = time.monotonic()
    checked = _check(_lookup(server), case.domain)
    elapsed = time.monotonic() - started
    assert checked.result is case.result, checked
    if case.problem:
        assert case.problem in (checked.problem or "")
    assert elapsed <= TIME_LIMIT + SLACK
    assert checked.lookups <= 11  # the term that broke the limit is counted


def test_a_slow_domain_does_not_slow_the_others(server: HostileDnsServer) -> None:
    """Checks share one event loop: one waiting on a silent server holds no one up."""
    lookup = DnsLookup(
        [Nameserver("127.0.0.1", server.port)], timeout=QUERY_TIMEOUT, cache=DnsCache()
    )
    limits = Limits(time_limit=TIME_LIMIT)

    async def timed(domain: str) -> tuple[CheckResult, float]:
        started = time.monotonic()
        checked = await check_host(lookup, CLIENT, domain, f"a@{domain}", limits=limits)
        return checked, time.monotonic() - started

    async def together() -> list[tuple[CheckResult, float]]:
        slow = [asyncio.ensure_future(timed("silent.test")) for _ in range(20)]
        await asyncio.sleep(0.05)
        fast = await timed("cname-chain.test")
        return [fast, *await asyncio.gather(*slow)]

    (fast, fast_time), *slow = asyncio.run(together())
    assert fast.result is SpfResult.PASS
    assert fast_time < 0.5
    assert all(checked.result is SpfResult.TEMPERROR for checked, _ in slow)
    assert all(seconds <= TIME_LIMIT + SLACK for _, seconds in slow)
