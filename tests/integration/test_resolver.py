"""DnsLookup against the loopback DnsServer, and the server's own behaviour.

The last test runs every name and type of both openspf suites through
DnsLookup-over-DnsServer and through FakeLookup and requires identical
answers, so unit tests on FakeLookup stand for real DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from helpers.dnsserver import DnsServer, LoggedQuery
from helpers.dnszone import Zone
from helpers.fakelookup import FakeLookup
from spf_milter.dnsclient.resolver import DnsLookup, Nameserver, parse_nameserver
from spf_milter.spf.lookup import DnsError, DnsServerFailure, DnsTimeout, Lookup

pytestmark = pytest.mark.integration

T = TypeVar("T")
SUITE_DIR = Path(__file__).resolve().parents[1] / "openspf"
# Seconds per lookup. Loopback answers take milliseconds, but on a busy machine
# the server's thread may wait long for a core: only a query that is meant to
# time out gets a short timeout (EXPECTED_TIMEOUT), so load can never turn an
# answer into a timeout.
TIMEOUT = 5.0
EXPECTED_TIMEOUT = 0.5
IO_TIMEOUT = 10.0  # seconds for raw queries in these tests


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def make_lookup(server: DnsServer, timeout: float = TIMEOUT) -> DnsLookup:
    return DnsLookup([Nameserver("127.0.0.1", server.port)], timeout=timeout)


def example_zone() -> Zone:
    zone = Zone()
    zone.add_txt("example.com", b"v=spf1 ", b"mx -all")
    zone.add_txt("example.com", b"second record")
    zone.add_a("example.com", "192.0.2.1")
    zone.add_a("example.com", "192.0.2.2")
    zone.add_aaaa("example.com", "2001:db8::1")
    zone.add_mx("example.com", 20, "mx2.example.com.")
    zone.add_mx("example.com", 10, "MX1.Example.com")
    zone.add_ptr("1.2.0.192.in-addr.arpa", "example.com.")
    zone.add_cname("www.example.com", "alias.example.net")
    zone.add_cname("alias.example.net", "example.com")
    zone.add_a("deep.sub.example.com", "192.0.2.3")
    return zone


@pytest.fixture
def server(dns_server: DnsServer) -> DnsServer:
    dns_server.zone = example_zone()
    return dns_server


@pytest.fixture
def lookup(server: DnsServer) -> DnsLookup:
    return make_lookup(server)


# -- record types -------------------------------------------------------------


def test_txt_strings_of_one_record_are_joined(lookup: DnsLookup) -> None:
    assert run(lookup.txt("example.com")) == [b"v=spf1 mx -all", b"second record"]


def test_a_and_aaaa_are_addresses(lookup: DnsLookup) -> None:
    assert run(lookup.a("example.com")) == [
        ipaddress.IPv4Address("192.0.2.1"),
        ipaddress.IPv4Address("192.0.2.2"),
    ]
    assert run(lookup.aaaa("example.com")) == [ipaddress.IPv6Address("2001:db8::1")]


def test_mx_lowest_preference_first_without_trailing_dot(lookup: DnsLookup) -> None:
    assert run(lookup.mx("example.com")) == ["MX1.Example.com", "mx2.example.com"]


def test_ptr_targets_without_trailing_dot(lookup: DnsLookup) -> None:
    assert run(lookup.ptr("1.2.0.192.in-addr.arpa")) == ["example.com"]


def test_cname_chain_is_followed(lookup: DnsLookup) -> None:
    assert run(lookup.a("www.example.com")) == run(lookup.a("example.com"))


def test_names_with_trailing_dot_and_any_case_work(lookup: DnsLookup) -> None:
    assert run(lookup.aaaa("EXAMPLE.com.")) == [ipaddress.IPv6Address("2001:db8::1")]


# -- empty answers and errors ------------------------------------------------------


def test_nxdomain_nodata_and_empty_non_terminal_are_empty(lookup: DnsLookup) -> None:
    assert run(lookup.txt("absent.example.com")) == []
    assert run(lookup.ptr("example.com")) == []
    assert run(lookup.a("sub.example.com")) == []


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a" * 64 + ".example.com", id="label-over-63"),
        pytest.param(".".join(["a" * 63] * 4), id="name-over-255"),
        pytest.param("a..example.com", id="empty-label"),
        pytest.param("", id="empty-name"),
    ],
)
def test_impossible_names_are_empty_without_a_query(
    server: DnsServer, lookup: DnsLookup, name: str
) -> None:
    assert run(lookup.txt(name)) == []
    assert server.query_count == 0


def test_timeout_raises_dns_timeout_within_the_timeout(server: DnsServer) -> None:
    server.zone.set_timeout("slow.example.com")
    lookup = make_lookup(server, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(DnsTimeout):
        run(lookup.txt("slow.example.com"))
    assert 0.25 <= time.monotonic() - start < 0.3 + 2.0  # not the 5 s default
    assert server.query_count >= 1  # the query arrived and was left unanswered


def test_servfail_raises_server_failure(server: DnsServer, lookup: DnsLookup) -> None:
    server.zone.set_servfail("broken.example.com")
    with pytest.raises(DnsServerFailure, match="SERVFAIL"):
        run(lookup.txt("broken.example.com"))


def test_refused_raises_server_failure(server: DnsServer, lookup: DnsLookup) -> None:
    server.zone.set_refused("closed.example.com")
    with pytest.raises(DnsServerFailure, match="REFUSED"):
        run(lookup.txt("closed.example.com"))


def test_cname_loop_raises_server_failure(server: DnsServer, lookup: DnsLookup) -> None:
    server.zone.add_cname("loop1.example.com", "loop2.example.com")
    server.zone.add_cname("loop2.example.com", "LOOP1.example.com")
    with pytest.raises(DnsServerFailure):
        run(lookup.a("loop1.example.com"))


def test_unreachable_server_times_out(dns_server: DnsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: queries vanish
        lookup = DnsLookup([Nameserver("127.0.0.1", silent.getsockname()[1])], 0.2)
        with pytest.raises(DnsTimeout):
            run(lookup.a("example.com"))


# -- transport -----------------------------------------------------------------


def test_large_txt_arrives_by_tcp_fallback(
    server: DnsServer, lookup: DnsLookup
) -> None:
    server.zone.add_txt("big.example.com", b"x" * 10_000)
    assert run(lookup.txt("big.example.com")) == [b"x" * 10_000]
    assert server.queries == [
        LoggedQuery("big.example.com", "TXT", "udp"),
        LoggedQuery("big.example.com", "TXT", "tcp"),
    ]


def test_udp_answer_over_512_bytes_without_edns_is_truncated(server: DnsServer) -> None:
    server.zone.add_txt("mid.example.com", b"y" * 600)
    query = dns.message.make_query("mid.example.com", "TXT", use_edns=False)
    response = dns.query.udp(query, "127.0.0.1", IO_TIMEOUT, port=server.port)
    assert response.flags & dns.flags.TC
    assert response.answer == []


def test_udp_answer_fits_the_edns_payload_size(server: DnsServer) -> None:
    server.zone.add_txt("mid.example.com", b"y" * 600)
    query = dns.message.make_query("mid.example.com", "TXT", use_edns=0, payload=1232)
    response = dns.query.udp(query, "127.0.0.1", IO_TIMEOUT, port=server.port)
    assert not response.flags & dns.flags.TC
    assert len(response.answer) == 1


def test_negative_answer_is_authoritative_with_soa(server: DnsServer) -> None:
    query = dns.message.make_query("absent.example.com", "A")
    response = dns.query.udp(query, "127.0.0.1", IO_TIMEOUT, port=server.port)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


def test_timeout_name_is_not_answered_over_tcp(server: DnsServer) -> None:
    server.zone.set_timeout("slow.example.com")
    query = dns.message.make_query("slow.example.com", "TXT")
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(query, "127.0.0.1", 0.3, port=server.port)
    assert server.queries == [LoggedQuery("slow.example.com", "TXT", "tcp")]


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no ::1 on this host")
def test_ipv6_nameserver_is_used() -> None:
    with DnsServer(example_zone(), addresses=("127.0.0.1", "::1")) as server:
        lookup = DnsLookup([parse_nameserver(f"[::1]:{server.port}")], TIMEOUT)
        assert run(lookup.a("deep.sub.example.com")) == [
            ipaddress.IPv4Address("192.0.2.3")
        ]


# -- the server itself ------------------------------------------------------------


LAZY = 1.0  # seconds before the server answers a delayed name (< 2 s attempt)


def test_delayed_name_does_not_hold_up_other_names(server: DnsServer) -> None:
    server.zone.set_delay("lazy.example.com", LAZY)
    server.zone.add_a("lazy.example.com", "192.0.2.9")
    lookup = make_lookup(server)

    async def race() -> tuple[list[str], float]:
        done: list[str] = []
        start = time.monotonic()

        async def query(name: str) -> None:
            await lookup.a(name)
            done.append(name)

        slow = asyncio.create_task(query("lazy.example.com"))
        await query("example.com")
        fast = time.monotonic() - start
        await slow
        return done, fast

    done, fast = run(race())
    assert done == ["example.com", "lazy.example.com"]
    assert fast < LAZY  # answered before the delayed name could be


def test_zone_can_be_swapped_at_run_time(server: DnsServer, lookup: DnsLookup) -> None:
    replacement = Zone()
    replacement.add_txt("example.com", b"v=spf1 -all")
    server.zone = replacement
    assert run(lookup.txt("example.com")) == [b"v=spf1 -all"]


def test_malformed_queries_are_dropped_and_the_server_lives(server: DnsServer) -> None:
    garbage = [b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\x01" * 40]
    response = dns.message.make_response(dns.message.make_query("example.com", "A"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in [*garbage, response.to_wire()]:
            sock.sendto(packet, ("127.0.0.1", server.port))
    with socket.create_connection(("127.0.0.1", server.port), IO_TIMEOUT) as sock:
        sock.sendall(b"\x00\x05hello\x00")  # a junk message, then a cut-off length
    assert run(make_lookup(server).a("deep.sub.example.com")) == [
        ipaddress.IPv4Address("192.0.2.3")
    ]
    assert server.query_count == 1


def test_server_stops_at_once_with_a_query_pending() -> None:
    zone = Zone()
    zone.set_timeout("slow.example.com")
    query = dns.message.make_query("slow.example.com", "TXT").to_wire()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(DnsServer(zone))
        sock = stack.enter_context(
            socket.create_connection(("127.0.0.1", server.port), IO_TIMEOUT)
        )
        sock.sendall(len(query).to_bytes(2, "big") + query)
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 3.0  # not waiting for the query
        sock.settimeout(IO_TIMEOUT)
        assert sock.recv(1) == b""  # the server closed the connection


def test_standalone_server_prints_its_port_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    zone_file = tmp_path / "example.zone"
    zone_file.write_text("$TTL 300\n$ORIGIN example.com.\n@ IN A 192.0.2.1\n")
    tests_dir = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "helpers.dnsserver", "--zone", str(zone_file)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, cwd=tests_dir
    ) as process:
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, "the server printed no port within 10 s"
            port = int(process.stdout.readline())
            lookup = DnsLookup([Nameserver("127.0.0.1", port)], TIMEOUT)
            assert run(lookup.a("example.com")) == [ipaddress.IPv4Address("192.0.2.1")]
            process.send_signal(signal.SIGTERM)
            assert process.wait(5) == 0
        finally:
            process.kill()


def test_server_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        DnsServer(Zone(), addresses=("192.0.2.1",))


# -- FakeLookup and DnsLookup agree on both official suites ----------------------------


def suite_scenarios() -> list[Any]:
    scenarios = []
    for path in sorted(SUITE_DIR.glob("*.yml")):
        suite = path.stem.removesuffix("-tests")
        with path.open(encoding="utf-8") as stream:
            for doc in yaml.safe_load_all(stream):
                label = f"{suite}/{doc['description']}"
                scenarios.append(pytest.param(doc["zonedata"], id=label))
    return scenarios


def names_to_try(zonedata: dict[str, list[Any]]) -> set[str]:
    """Listed names, their parents, absent children, and every target name."""
    names: set[str] = set()
    for name, entries in zonedata.items():
        bare = name.removesuffix(".")
        names.update({name, bare.upper(), bare.partition(".")[2], f"absent.{bare}"})
        for entry in entries:
            if isinstance(entry, dict):
                value = next(iter(entry.values()))
                if isinstance(value, list) and len(value) == 2:  # MX
                    value = value[1]
                if isinstance(value, str) and next(iter(entry)) != "TXT":
                    names.add(value)
    return {name for name in names if " " not in name and name}


async def outcome(lookup: Lookup, rdtype: str, name: str) -> object:
    query = getattr(lookup, rdtype)
    try:
        return await query(name)
    except DnsError as exc:
        return type(exc)


async def outcomes(
    lookup: Lookup, queries: list[tuple[str, str]], limit: asyncio.Semaphore
) -> list[object]:
    async def one(rdtype: str, name: str) -> object:
        async with limit:
            return await outcome(lookup, rdtype, name)

    async with asyncio.timeout(60):
        return await asyncio.gather(*(one(t, n) for t, n in queries))


def test_both_suites_are_present() -> None:
    assert len(suite_scenarios()) == 31


@pytest.mark.parametrize("zonedata", suite_scenarios())
def test_dns_lookup_answers_exactly_as_fake_lookup(
    dns_server: DnsServer, zonedata: dict[str, list[Any]]
) -> None:
    zone = Zone.from_openspf(zonedata)
    dns_server.zone = zone
    queries = [
        (rdtype, name)
        for name in sorted(names_to_try(zonedata))
        for rdtype in ("txt", "a", "aaaa", "mx", "ptr")
    ]
    in_memory = run(outcomes(FakeLookup(zone), queries, asyncio.Semaphore(1)))
    fake = dict(zip(queries, in_memory, strict=True))
    # Queries meant to time out are asked with a short timeout, the rest with
    # a long one: on a busy machine, load cannot make an answer time out.
    slow = [query for query in queries if fake[query] is DnsTimeout]
    fast = [query for query in queries if fake[query] is not DnsTimeout]
    answered = run(outcomes(make_lookup(dns_server), fast, asyncio.Semaphore(16)))
    expiring = make_lookup(dns_server, timeout=EXPECTED_TIMEOUT)
    expired = run(outcomes(expiring, slow, asyncio.Semaphore(64)))
    real = dict(zip([*fast, *slow], [*answered, *expired], strict=True))
    differences = [(q, fake[q], real[q]) for q in queries if fake[q] != real[q]]
    assert differences == []
