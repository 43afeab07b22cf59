"""A stub resolver's exchange: one question to the nameservers, one answer.

dnspython builds and parses the messages; this module sends them. It does
what ``dns.asyncresolver`` does for a single fully qualified name, with a
fraction of its work per query (no task, queue or transport per query, a
datagram read straight off the socket), because an SPF milter sends
thousands of queries a second and every uncached check waits for them.

Against forged answers (RFC 5452): every query leaves from a new UDP
socket, so from a new source port the kernel picks at random, with a new
random id; the socket is connected to the nameserver, so the kernel drops
datagrams from any other address; an answer must carry the query's id,
opcode and question, or it is ignored and the wait goes on, as it is for
datagrams that do not parse.

What the answer means, as dnspython's resolver reads it:

- NOERROR: the records of the name (CNAME chains inside the answer
  followed), kept for their TTL, or none (NODATA) kept for the negative TTL
  of the authority section's SOA (RFC 2308 §5); NXDOMAIN the same, empty;
- a truncated answer (TC): the question again over TCP to the same server
  (RFC 7766 §5);
- SERVFAIL, REFUSED, any other rcode, a broken CNAME chain, a socket error:
  that server is done for this query and the next one is asked; when none
  is left the query has failed (``QueryFailed``);
- no answer within the attempt timeout: the next server is asked, round
  and round, until the query's lifetime ends (``QueryTimeout``).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype

# RFC 6891 §6.2.5 leaves the size to the sender; 1232 bytes avoids IP
# fragmentation on any path (the DNS Flag Day 2020 value, dnspython's default).
EDNS_PAYLOAD: Final = 1232
DEFAULT_PORT: Final = 53
ATTEMPT_TIMEOUT: Final = 2.0  # seconds for one server to answer (dnspython's)
_MAX_DATAGRAM: Final = 65535
_SILENT: Final = "no answer"
_HEADER: Final = 12  # octets of a DNS message header


class QueryFailed(Exception):
    """No server gave a usable answer (the distinct reasons in the message).

    The message names no server: it reaches header fields of delivered mail.
    """


class QueryTimeout(QueryFailed):
    """The query's lifetime ended before any server answered."""


class _Unusable(Exception):
    """A well-formed answer this server should not have given (its rcode)."""


# What ends a server's part in one query: a socket error, a broken TCP
# answer or CNAME chain, an rcode other than NOERROR/NXDOMAIN/YXDOMAIN.
_SERVER_DONE: Final = (OSError, EOFError, dns.exception.DNSException, _Unusable)


@dataclass(frozen=True, slots=True)
class Nameserver:
    """A DNS server to send queries to: an IP address and a port."""

    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Answer:
    """The records that answer the question, and how long they may be kept."""

    records: Sequence[dns.rdata.Rdata]
    ttl: float


class StubResolver:
    """Ask ``servers`` in turn, each given ``attempt_timeout`` to answer."""

    def __init__(
        self,
        servers: Sequence[Nameserver],
        attempt_timeout: float = ATTEMPT_TIMEOUT,
        payload: int = EDNS_PAYLOAD,
    ) -> None:
        if not servers:
            raise ValueError("a resolver needs at least one nameserver")
        self.servers = tuple(servers)
        self.attempt_timeout = attempt_timeout
        self._payload = payload

    async def resolve(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, lifetime: float
    ) -> Answer:
        """Return the answer to ``qname``/``rdtype`` within ``lifetime`` seconds.

        Raise QueryTimeout when the lifetime ends first, QueryFailed when
        every server has given an unusable answer.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + lifetime
        request = dns.message.make_query(
            qname, rdtype, use_edns=0, payload=self._payload
        )
        wire = request.to_wire()
        servers = list(self.servers)
        problems: dict[Nameserver, str] = {}
        while servers:
            for server in tuple(servers):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    failed = [p for p in problems.values() if p != _SILENT]
                    raise QueryTimeout(
                        _why([*failed, f"no answer within {lifetime:g} s"])
                    )
                try:
                    response = await _ask(
                        request,
                        wire,
                        server,
                        remaining,
                        min(self.attempt_timeout, remaining),
                    )
                    return _answer(response)
                except TimeoutError:  # (an OSError: caught before _SERVER_DONE)
                    problems[server] = _SILENT
                except _SERVER_DONE as exc:
                    problems[server] = str(exc) or type(exc).__name__
                    servers.remove(server)
        raise QueryFailed(_why(problems.values()))


def _why(reasons: Iterable[str]) -> str:
    """Return the distinct reasons, without the servers' addresses.

    The text ends up in header fields of delivered mail (a temperror's
    problem), which should not tell where the site's resolvers are.
    """
    return "; ".join(dict.fromkeys(reasons))


async def _ask(
    request: dns.message.QueryMessage,
    wire: bytes,
    server: Nameserver,
    remaining: float,
    timeout: float,
) -> dns.message.Message:
    """Return ``server``'s response to ``request``, over TCP if UDP's is truncated."""
    response = await _udp(request, wire, server, timeout)
    if response.flags & dns.flags.TC:
        response = await dns.asyncquery.tcp(
            request, server.host, timeout=remaining, port=server.port
        )
    return response


async def _udp(
    request: dns.message.QueryMessage, wire: bytes, server: Nameserver, timeout: float
) -> dns.message.Message:
    """Send ``wire`` over a fresh connected socket; await the matching response."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((server.host, server.port))  # no wait: UDP only sets the peer
        sock.send(wire)
        waiter: asyncio.Future[dns.message.Message] = loop.create_future()
        fd = sock.fileno()
        loop.add_reader(fd, _read, sock, request, wire[:2], waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            loop.remove_reader(fd)


def _read(
    sock: socket.socket,
    request: dns.message.QueryMessage,
    query_id: bytes,
    waiter: asyncio.Future[dns.message.Message],
) -> None:
    """Take every datagram waiting on ``sock``; settle ``waiter`` on the response."""
    while not waiter.done():
        try:
            datagram = sock.recv(_MAX_DATAGRAM)
        except BlockingIOError:
            return
        except OSError as exc:  # ICMP unreachable on the connected socket
            waiter.set_exception(exc)
            return
        if len(datagram) < _HEADER or datagram[:2] != query_id:
            continue  # not ours: cheaper to drop before parsing
        response = _parse(datagram)
        if response is not None and request.is_response(response):
            waiter.set_result(response)


def _parse(datagram: bytes) -> dns.message.Message | None:
    """Return the message in ``datagram``, or None if it is not one."""
    try:
        return dns.message.from_wire(datagram, raise_on_truncation=False)
    except Exception:  # noqa: BLE001 - what a forger or a broken server sends
        return None


def _answer(response: dns.message.Message) -> Answer:
    """Read ``response`` as dnspython's resolver does (see the module docstring)."""
    rcode = response.rcode()
    if rcode == dns.rcode.YXDOMAIN:
        raise QueryFailed("the name is too long after DNAME substitution (YXDOMAIN)")
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise _Unusable(f"answered {dns.rcode.to_text(rcode)}")
    if not isinstance(response, dns.message.QueryMessage):
        raise _Unusable("answered with something that is not a query response")
    chain = response.resolve_chaining()  # raises on a CNAME loop or a broken chain
    ttl = float(chain.minimum_ttl)
    if rcode == dns.rcode.NXDOMAIN:
        return Answer((), ttl)
    return Answer(tuple(chain.answer or ()), ttl)
