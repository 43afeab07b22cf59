"""A real authoritative DNS server on loopback that serves a dnszone.Zone.

In tests::

    with DnsServer(zone) as server:        # 127.0.0.1, an ephemeral port
        lookup = DnsLookup([Nameserver("127.0.0.1", server.port)])
        server.zone = other_zone           # swap the data at run time
        server.queries                     # [LoggedQuery(name, rdtype, transport)]

Standalone, for the daemon and benchmarks (prints the port, runs until
SIGTERM or SIGINT), as a module from tests/ so that ``helpers`` imports::

    cd tests
    python -m helpers.dnsserver --zone zones/x.zone [--port N] [--address A]
    python -m helpers.dnsserver --openspf openspf/rfc7208-tests.yml \
        --scenario "Record lookup"

UDP and TCP share one port on every address. One asyncio loop in a
background thread answers each query in its own task, so a delayed name
never holds up another. What the server does, after the openspf README
("Serving zonedata over real DNS"): AA on every answer; the SOA in the
authority section of NXDOMAIN/NODATA; in-zone CNAME chains in the answer;
a timeout is a query read and never answered (UDP and TCP); answers over the
client's UDP size come with TC and no records; TCP carries any size.
Malformed queries are dropped, queries of the wrong shape get an error rcode.
"""

# dnspython leaves its rdata constructors and its Renderer unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import signal
import socket
import sys
import threading
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SPF
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.renderer
import dns.rrset
import yaml

from helpers.dnszone import Mx, Outcome, Rdata, Resolution, Zone, name_text
from helpers.lifecycle import Managed

TTL: Final = 300
MIN_UDP_SIZE: Final = 512  # RFC 1035 §4.2.1; RFC 6891 §6.2.5: less counts as 512
MAX_TCP_SIZE: Final = 65535  # RFC 1035 §4.2.2: a two-octet length prefix
BIND_ATTEMPTS: Final = 20
START_TIMEOUT: Final = 5.0
STOP_TIMEOUT: Final = 5.0
IN = dns.rdataclass.IN

Transport = Literal["udp", "tcp"]


@dataclass(frozen=True, slots=True)
class LoggedQuery:
    """One query the server read: name as sent (no trailing dot), type, transport."""

    name: str
    rdtype: str
    transport: Transport


class DnsServer(Managed):
    """Serve ``zone`` on ``addresses`` (loopback only), UDP and TCP, one port."""

    def __init__(
        self, zone: Zone, addresses: Sequence[str] = ("127.0.0.1",), port: int = 0
    ) -> None:
        for address in addresses:
            if not ipaddress.ip_address(address).is_loopback:
                raise ValueError(f"test DNS server must listen on loopback: {address}")
        self.zone = zone
        self.addresses = tuple(addresses)
        self.port = port
        self._log: list[LoggedQuery] = []
        self._log_lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Transport] = set()  # loop thread only
        self._delayed = 0  # queries waiting out their delay now (loop thread only)
        self._delayed_peak = 0

    @property
    def queries(self) -> list[LoggedQuery]:
        """Return the queries read so far, oldest first."""
        with self._log_lock:
            return list(self._log)

    @property
    def query_count(self) -> int:
        """Return how many queries the server has read."""
        with self._log_lock:
            return len(self._log)

    @property
    def delayed_peak(self) -> int:
        """Return the most delayed queries that were waiting at the same time.

        Queries waiting together were sent before any of them was answered:
        a count that shows concurrency however slow the machine is.
        """
        with self._log_lock:
            return self._delayed_peak

    def clear_queries(self) -> None:
        """Forget the queries read so far."""
        with self._log_lock:
            self._log.clear()
            self._delayed_peak = 0

    def start(self) -> None:
        """Bind the sockets and start answering in a background thread."""
        sockets = _bind(self.addresses, self.port)
        self.port = sockets[0].getsockname()[1]
        self._thread = threading.Thread(
            target=self._run,
            args=(sockets,),
            name=f"dnsserver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._loop is None:
            raise RuntimeError("DNS server thread did not start")

    def stop(self) -> None:
        """Stop answering and close every socket, within STOP_TIMEOUT."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"DNS server did not stop within {STOP_TIMEOUT} s")
        self._thread = None

    # -- the loop thread ---------------------------------------------------

    def _run(self, sockets: list[socket.socket]) -> None:
        try:
            asyncio.run(self._serve(sockets))
        finally:
            self._ready.set()  # never leave start() waiting on a dead thread
            for sock in sockets:
                sock.close()

    async def _serve(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        endpoints: list[asyncio.AbstractServer | asyncio.BaseTransport] = []
        for sock in sockets:
            if sock.type == socket.SOCK_DGRAM:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), sock=sock
                )
                endpoints.append(transport)
            else:
                endpoints.append(
                    await loop.create_server(
                        lambda: _TcpProtocol(self, self._connections), sock=sock
                    )
                )
        self._loop = loop
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self._shutdown(endpoints)

    async def _shutdown(
        self, endpoints: list[asyncio.AbstractServer | asyncio.BaseTransport]
    ) -> None:
        """Close listeners and connections, cancel the queries in progress."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT / 4
        # asyncio sets up each accepted connection in a task of its own and
        # fails (leaking the socket) if the listener closes meanwhile.
        while (setting_up := self._foreign_tasks()) and loop.time() < deadline:
            await asyncio.wait(setting_up, timeout=deadline - loop.time())
        for endpoint in [*endpoints, *self._connections]:
            endpoint.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # closed transports close their sockets now

    def _foreign_tasks(self) -> set[asyncio.Task[Any]]:
        """Return the loop's tasks other than this one and the queries'."""
        current = asyncio.current_task()
        return {
            task
            for task in asyncio.all_tasks()
            if task is not current and task not in self._tasks
        }

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a task that stop() cancels (loop thread only)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait(self, delay: float) -> None:
        with self._log_lock:
            self._delayed += 1
            self._delayed_peak = max(self._delayed_peak, self._delayed)
        try:
            await asyncio.sleep(delay)
        finally:
            with self._log_lock:
                self._delayed -= 1

    async def reply(self, wire: bytes, transport: Transport) -> bytes | None:
        """Return the response to query ``wire``, or None to send nothing."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # malformed: drop it
        if query.flags & dns.flags.QR:
            return None  # a response, not a query: never answer one
        error = _shape_error(query)
        if error is not None:
            return _to_wire(_error_response(query, error), MAX_TCP_SIZE)
        question = query.question[0]
        rdtype = dns.rdatatype.to_text(question.rdtype)
        with self._log_lock:
            self._log.append(LoggedQuery(name_text(question.name), rdtype, transport))
        resolution = self.zone.resolve(name_text(question.name), rdtype)
        if resolution.delay > 0:
            await self._wait(resolution.delay)
        if resolution.outcome is Outcome.TIMEOUT:
            return None
        try:
            return _render(_response(query, resolution), query, transport)
        except dns.exception.DNSException:
            return None  # the zone holds data that cannot go on the wire


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's own UDP transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._server.spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = await self._server.reply(data, "udp")
        if reply is not None and self._transport and not self._transport.is_closing():
            self._transport.sendto(reply, addr)


class _TcpProtocol(asyncio.Protocol):
    """One TCP connection: two-octet length, message (RFC 1035 §4.2.2)."""

    def __init__(self, server: DnsServer, connections: set[asyncio.Transport]) -> None:
        self._server = server
        self._connections = connections  # the open ones, for the server to close
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        # RFC 7766 §6.2.1.1: queries may be pipelined; answer each at once.
        while len(self._buffer) >= 2:
            end = 2 + int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < end:
                return
            self._server.spawn(self._answer(self._buffer[2:end]))
            self._buffer = self._buffer[end:]

    async def _answer(self, wire: bytes) -> None:
        reply = await self._server.reply(wire, "tcp")
        if reply is not None and self._transport and not self._transport.is_closing():
            self._transport.write(len(reply).to_bytes(2, "big") + reply)


# -- building responses --------------------------------------------------------


def _shape_error(query: dns.message.Message) -> dns.rcode.Rcode | None:
    """Return the rcode for a query this server does not handle, or None."""
    if query.opcode() != dns.opcode.QUERY:
        return dns.rcode.NOTIMP
    if len(query.question) != 1:
        return dns.rcode.FORMERR
    if query.question[0].rdclass != IN:
        return dns.rcode.REFUSED
    return None


def _error_response(
    query: dns.message.Message, rcode: dns.rcode.Rcode
) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    return response


def _response(
    query: dns.message.Message, resolution: Resolution
) -> dns.message.Message:
    """Build the authoritative response for ``resolution``."""
    if resolution.outcome is Outcome.SERVFAIL:
        return _error_response(query, dns.rcode.SERVFAIL)
    if resolution.outcome is Outcome.REFUSED:
        return _error_response(query, dns.rcode.REFUSED)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    question = query.question[0]
    owner = question.name
    for target in resolution.cnames:  # RFC 1034 §4.3.2 step 3a: chain in answer
        cname = dns.rdtypes.ANY.CNAME.CNAME(IN, dns.rdatatype.CNAME, dns_name(target))
        response.answer.append(dns.rrset.from_rdata(owner, TTL, cname))
        owner = cname.target
    if resolution.outcome is Outcome.ANSWER:
        rdatas = [_rdata(question.rdtype, value) for value in resolution.records]
        response.answer.append(dns.rrset.from_rdata_list(owner, TTL, rdatas))
        return response
    # RFC 2308 §3: a negative answer carries the SOA for negative caching.
    response.authority.append(dns.rrset.from_rdata(dns.name.root, TTL, _SOA))
    if resolution.outcome is Outcome.NXDOMAIN:
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response


_SOA = dns.rdata.from_text(
    IN, dns.rdatatype.SOA, "localhost. hostmaster.localhost. 1 3600 600 86400 60"
)


def _rdata(rdtype: dns.rdatatype.RdataType, value: Rdata) -> dns.rdata.Rdata:
    """Return ``value`` (zone data of type ``rdtype``) as a dnspython rdata."""
    match value:
        case tuple() if rdtype == dns.rdatatype.SPF:
            return dns.rdtypes.ANY.SPF.SPF(IN, rdtype, value)
        case tuple():
            return dns.rdtypes.ANY.TXT.TXT(IN, rdtype, value)
        case ipaddress.IPv4Address():
            return dns.rdtypes.IN.A.A(IN, rdtype, str(value))
        case ipaddress.IPv6Address():
            return dns.rdtypes.IN.AAAA.AAAA(IN, rdtype, str(value))
        case Mx(preference, exchange):
            return dns.rdtypes.ANY.MX.MX(IN, rdtype, preference, dns_name(exchange))
        case str() if rdtype == dns.rdatatype.CNAME:
            return dns.rdtypes.ANY.CNAME.CNAME(IN, rdtype, dns_name(value))
        case str():
            return dns.rdtypes.ANY.PTR.PTR(IN, rdtype, dns_name(value))
    raise TypeError(f"no rdata for {value!r}")


def dns_name(text: str) -> dns.name.Name:
    """Return zone name ``text`` as an absolute name, labels taken verbatim."""
    if not text:
        return dns.name.root
    labels = [label.encode("utf-8", "surrogateescape") for label in text.split(".")]
    return dns.name.Name([*labels, b""])


def _render(
    response: dns.message.Message, query: dns.message.Message, transport: Transport
) -> bytes:
    """Return the wire form, truncated (TC, no records) if too big for UDP."""
    limit = MAX_TCP_SIZE if transport == "tcp" else _udp_size(query)
    try:
        return _to_wire(response, limit)
    except dns.exception.TooBig:
        # RFC 2181 §9: set TC rather than send a partial RRset.
        truncated = dns.message.make_response(query)
        truncated.flags |= dns.flags.AA | dns.flags.TC
        return _to_wire(truncated, limit)


class _NoCompression(dict[dns.name.Name, int]):
    """A name compression table that stays empty: names go out verbatim.

    Compression matches suffixes case-insensitively, so the client would see
    the case of an earlier name ("MX1.Example.com" after the question
    "example.com" arrives as "MX1.example.com"). FakeLookup keeps the case
    of the zone, and so must the server for both to serve identical data.
    """

    def __setitem__(self, key: dns.name.Name, value: int) -> None:
        pass


def _to_wire(message: dns.message.Message, max_size: int) -> bytes:
    """Render ``message`` uncompressed; raise TooBig beyond ``max_size`` bytes.

    Records keep the zone's order (dnspython would shuffle them): the engine
    must not depend on order, but both test doubles should give the same one.
    """
    renderer = dns.renderer.Renderer(message.id, message.flags, max_size)
    renderer.compress = _NoCompression()
    for question in message.question:
        renderer.add_question(question.name, question.rdtype, question.rdclass)
    for rrset in message.answer:
        renderer.add_rrset(dns.renderer.ANSWER, rrset, want_shuffle=False)
    for rrset in message.authority:
        renderer.add_rrset(dns.renderer.AUTHORITY, rrset, want_shuffle=False)
    if message.opt is not None:
        renderer.add_opt(message.opt)
    renderer.write_header()
    wire: bytes = renderer.get_wire()
    return wire


def _udp_size(query: dns.message.Message) -> int:
    """Return the largest UDP response the client accepts (RFC 6891 §6.2.5)."""
    if query.edns < 0:
        return MIN_UDP_SIZE
    return max(MIN_UDP_SIZE, query.payload)


# -- sockets --------------------------------------------------------------------


def _bind(addresses: Sequence[str], port: int) -> list[socket.socket]:
    """Bind UDP and TCP sockets on every address, all on one port."""
    attempts = BIND_ATTEMPTS if port == 0 else 1
    for attempt in range(1, attempts + 1):
        try:
            return _bind_once(addresses, port)
        except OSError as exc:
            # An ephemeral port free for the first socket may be taken for
            # another protocol or address: try a fresh one.
            if exc.errno != errno.EADDRINUSE or attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _bind_once(addresses: Sequence[str], port: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for address in addresses:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                sock = _socket(address, kind)
                sockets.append(sock)
                sock.bind((address, port))
                port = sock.getsockname()[1]
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _socket(address: str, kind: socket.SocketKind) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


# -- command line ----------------------------------------------------------------


def load_openspf(path: Path, scenario: str | None) -> Zone:
    """Return the zone of one scenario of an openspf suite file.

    ``scenario`` is its description; it may be omitted when the file holds
    one scenario, or is a bare ``zonedata`` mapping.
    """
    with path.open(encoding="utf-8") as stream:
        docs = [doc for doc in yaml.safe_load_all(stream) if doc]
    zonedata = [doc.get("zonedata", doc) for doc in docs if _wanted(doc, scenario)]
    if len(zonedata) != 1:
        names = ", ".join(repr(doc.get("description")) for doc in docs)
        raise SystemExit(f"{path}: name one scenario with --scenario: {names}")
    return Zone.from_openspf(zonedata[0])


def _wanted(doc: dict[str, Any], scenario: str | None) -> bool:
    return scenario is None or doc.get("description") == scenario


def main(argv: Iterable[str] | None = None) -> int:
    """Serve a zone file or an openspf scenario until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="Serve a zone on loopback DNS.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--zone", type=Path, help="RFC 1035 zone file")
    source.add_argument("--openspf", type=Path, help="openspf test-suite YAML")
    parser.add_argument("--scenario", help="scenario description (with --openspf)")
    parser.add_argument("--port", type=int, default=0, help="default: ephemeral")
    parser.add_argument("--address", action="append", help="default: 127.0.0.1")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.zone is not None:
        zone = Zone.from_text(args.zone.read_text(encoding="utf-8"))
    else:
        zone = load_openspf(args.openspf, args.scenario)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Block them before the server thread starts, so that only sigwait sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with DnsServer(zone, args.address or ["127.0.0.1"], args.port) as server:
        print(server.port, flush=True)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
