"""The stub resolver against forged answers and failing servers, over loopback UDP.

A scripted nameserver here answers each query with whatever datagrams a
test wants, from its own socket or from another one, so the tests can play
the off-path forger of RFC 5452 and the broken server; the real DnsServer
stands for the good one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator

import dns.message
import dns.rcode
import dns.rrset
import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.lifecycle import Managed
from spf_milter.dnsclient.resolver import DnsLookup, Nameserver
from spf_milter.spf.lookup import DnsServerFailure, DnsTimeout

pytestmark = pytest.mark.integration

Send = Callable[[bytes], None]
Script = Callable[[dns.message.Message, Send, Send], None]


class ScriptedServer(Managed):
    """A UDP 'nameserver' on 127.0.0.1 that runs ``script`` for each query.

    The script gets the parsed query, a function that sends a datagram back
    from the socket the query went to, and one that sends it from another
    socket (another source port: what an off-path forger can do).
    """

    def __init__(self, script: Script) -> None:
        self._script = script
        self.sources: list[tuple[int, int]] = []  # (client port, query id)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._other.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sock.close()
        self._other.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            self.sources.append((client[1], query.id))
            self._script(query, *self._senders(client))

    def _senders(self, client: tuple[str, int]) -> tuple[Send, Send]:
        def send(data: bytes) -> None:
            self._sock.sendto(data, client)

        def send_other(data: bytes) -> None:
            self._other.sendto(data, client)

        return send, send_other


def answer(query: dns.message.Message, address: str) -> bytes:
    """Return a well-formed answer to ``query`` giving ``address`` as its A record."""
    response = dns.message.make_response(query)
    name = query.question[0].name
    response.answer.append(dns.rrset.from_text(name, 300, "IN", "A", address))
    return response.to_wire()


def lookup_of(*ports: int, timeout: float = 1.0) -> DnsLookup:
    return DnsLookup([Nameserver("127.0.0.1", port) for port in ports], timeout)


def a(lookup: DnsLookup, name: str = "example.com") -> list[ipaddress.IPv4Address]:
    return asyncio.run(lookup.a(name))


@pytest.fixture
def good_server() -> Iterator[DnsServer]:
    zone = Zone()
    zone.add_a("example.com", "192.0.2.1")
    with DnsServer(zone) as server:
        yield server


def forgeries(query: dns.message.Message) -> list[tuple[str, bytes]]:
    """What an off-path forger or a broken server sends, each with a name."""
    wrong_id = dns.message.from_wire(answer(query, "203.0.113.1"))
    wrong_id.id = (query.id + 1) % 65536
    other_name = dns.message.make_query("other.example", "A", id=query.id)
    not_a_response = dns.message.make_query(query.question[0].name, "A", id=query.id)
    return [
        ("garbage", b"\xff" * 40),
        ("header only", query.id.to_bytes(2, "big") + b"\x81\x80" + b"\x00" * 8),
        ("wrong id", wrong_id.to_wire()),
        ("other question", answer(other_name, "203.0.113.2")),
        ("a query, not a response", not_a_response.to_wire()),
    ]


def test_forged_and_malformed_datagrams_are_ignored_until_the_answer() -> None:
    def script(query: dns.message.Message, send: Send, send_other: Send) -> None:
        send_other(answer(query, "203.0.113.9"))  # right id and question, wrong port
        for _, forged in forgeries(query):
            send(forged)
        send(answer(query, "192.0.2.1"))

    with ScriptedServer(script) as server:
        assert a(lookup_of(server.port)) == [ipaddress.IPv4Address("192.0.2.1")]


def test_forgeries_alone_are_no_answer() -> None:
    def script(query: dns.message.Message, send: Send, send_other: Send) -> None:
        send_other(answer(query, "203.0.113.9"))
        for _, forged in forgeries(query):
            send(forged)

    with ScriptedServer(script) as server:
        start = time.monotonic()
        with pytest.raises(DnsTimeout):
            a(lookup_of(server.port, timeout=0.5))
        # Forgeries do not restart the wait (the bound allows for a busy machine).
        assert time.monotonic() - start < 0.5 + 2.5


def test_every_query_has_a_new_source_port_and_id() -> None:
    def script(query: dns.message.Message, send: Send, send_other: Send) -> None:
        send(answer(query, "192.0.2.1"))

    with ScriptedServer(script) as server:
        lookup = lookup_of(server.port)

        async def many() -> None:
            for n in range(20):
                await lookup.a(f"host{n}.example.com")

        asyncio.run(many())
    ports = {port for port, _ in server.sources}
    ids = {query_id for _, query_id in server.sources}
    assert len(server.sources) == 20
    # Random ports and ids: a repeat among 20 is possible, two are not likely.
    assert len(ports) >= 19
    assert len(ids) >= 19


def test_a_refusing_server_is_skipped_for_the_next(good_server: DnsServer) -> None:
    def script(query: dns.message.Message, send: Send, send_other: Send) -> None:
        refused = dns.message.make_response(query)
        refused.set_rcode(dns.rcode.REFUSED)
        send(refused.to_wire())

    with ScriptedServer(script) as refusing:
        lookup = lookup_of(refusing.port, good_server.port, timeout=10.0)
        start = time.monotonic()
        assert a(lookup) == [ipaddress.IPv4Address("192.0.2.1")]
        # At once, not after the refusing server's 2 s attempt.
        assert time.monotonic() - start < 1.5
        assert len(refusing.sources) == 1


def test_a_closed_port_is_skipped_at_once(good_server: DnsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    start = time.monotonic()
    answer = a(lookup_of(closed, good_server.port, timeout=10.0))
    assert answer == [ipaddress.IPv4Address("192.0.2.1")]
    with pytest.raises(DnsServerFailure, match="refused"):
        a(lookup_of(closed, timeout=10.0))
    # ICMP port unreachable, not the 2 s attempt timeout, twice.
    assert time.monotonic() - start < 1.5


def test_a_silent_server_gets_its_attempt_then_the_next_answers(
    good_server: DnsServer,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read
        lookup = lookup_of(silent.getsockname()[1], good_server.port, timeout=10.0)
        start = time.monotonic()
        assert a(lookup) == [ipaddress.IPv4Address("192.0.2.1")]
        # The first server had its 2 s attempt; the second answered at once,
        # well before the silent server's second attempt would end at 4 s.
        assert 1.9 <= time.monotonic() - start < 3.9


def test_every_server_failing_gives_the_reasons_but_not_the_servers() -> None:
    def servfail(query: dns.message.Message, send: Send, send_other: Send) -> None:
        failed = dns.message.make_response(query)
        failed.set_rcode(dns.rcode.SERVFAIL)
        send(failed.to_wire())

    with (
        ScriptedServer(servfail) as first,
        ScriptedServer(servfail) as second,
        pytest.raises(DnsServerFailure) as caught,
    ):
        a(lookup_of(first.port, second.port))
    # The text goes into header fields of delivered mail (a temperror's
    # problem): it says what went wrong, not where the resolvers are.
    assert caught.value.reason == "answered SERVFAIL"
    assert len(first.sources) == len(second.sources) == 1


def test_a_timeout_says_how_long_it_waited() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(DnsTimeout) as caught:
            a(lookup_of(silent.getsockname()[1], timeout=0.3))
    assert caught.value.reason == "no answer within 0.3 s"
    assert "127.0.0.1" not in str(caught.value)
