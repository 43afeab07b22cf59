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
- an answer section of more records than ``max_records`` (for its type):
  refused before it is parsed (``AnswerTooLarge``), since parsing one
  record costs dnspython some 30 µs of the event loop and a zone owner can
  publish 4,000 addresses in one TCP answer; no server is asked again;
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

from spf_milter.config.model import Nameserver

# RFC 6891 §6.2.5 leaves the size to the sender; 1232 bytes avoids IP
# fragmentation on any path (the DNS Flag Day 2020 value, dnspython's default).
EDNS_PAYLOAD: Final = 1232
ATTEMPT_TIMEOUT: Final = 2.0  # seconds for one server to answer (dnspython's)
_MAX_DATAGRAM: Final = 65535
_SILENT: Final = "no answer"
_HEADER: Final = 12  # octets of a DNS message header
# The most records an answer section may hold. No name needs more of one
# type: an MX set past 10 is a permerror anyway (RFC 7208 §4.6.4), address
# sets that large serve no mail; a name's TXT records (verification tokens
# beside the SPF record) get more room.
MAX_ANSWER_RECORDS: Final = 100
MAX_TXT_RECORDS: Final = 400


class QueryFailed(Exception):
    """No server gave a usable answer (the distinct reasons in the message).

    The message names no server: it reaches header fields of delivered mail.
    """


class QueryTimeout(QueryFailed):
    """The query's lifetime ended before any server answered."""


class AnswerTooLarge(QueryFailed):
    """The answer holds more records than a query of its type may bring."""


class _Unusable(Exception):
    """An answer this server should not have given (its rcode), or none over TCP."""


# What ends a server's part in one query: a socket error, a broken TCP
# answer or CNAME chain, an rcode other than NOERROR/NXDOMAIN/YXDOMAIN.
_SERVER_DONE: Final = (OSError, EOFError, dns.exception.DNSException, _Unusable)


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
        limit = MAX_TXT_RECORDS if rdtype == dns.rdatatype.TXT else MAX_ANSWER_RECORDS
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
                        _Question(request, wire, limit),
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


@dataclass(frozen=True, slots=True)
class _Question:
    """A query, its wire form, and the most answer records it may bring."""

    request: dns.message.QueryMessage
    wire: bytes
    max_records: int


async def _ask(
    question: _Question, server: Nameserver, remaining: float, timeout: float
) -> dns.message.Message:
    """Return ``server``'s response to ``question``, over TCP if UDP's is truncated."""
    response = await _udp(question, server, timeout)
    if response.flags & dns.flags.TC:
        response = await _tcp(question, server, remaining)
    return response


async def _udp(
    question: _Question, server: Nameserver, timeout: float
) -> dns.message.Message:
    """Send the query over a fresh connected socket; await the matching response."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((server.host, server.port))  # no wait: UDP only sets the peer
        sock.send(question.wire)
        waiter: asyncio.Future[dns.message.Message] = loop.create_future()
        fd = sock.fileno()
        loop.add_reader(fd, _read, sock, question, waiter)
        try:
            return await asyncio.wait_for(waiter, timeout)
        finally:
            loop.remove_reader(fd)


def _read(
    sock: socket.socket,
    question: _Question,
    waiter: asyncio.Future[dns.message.Message],
) -> None:
    """Take every datagram waiting on ``sock``; settle ``waiter`` on the response."""
    query_id = question.wire[:2]
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
        try:
            _check_size(datagram, question.max_records)
        except AnswerTooLarge as exc:
            waiter.set_exception(exc)
            return
        response = _parse(datagram)
        if response is not None and question.request.is_response(response):
            waiter.set_result(response)


async def _tcp(
    question: _Question, server: Nameserver, timeout: float
) -> dns.message.Message:
    """Ask over TCP (RFC 7766); look at the answer's size before parsing it."""
    try:
        # wait_for, not asyncio.timeout: an expiry that races with the last
        # read must not leave a cancellation pending on the caller's task.
        data = await asyncio.wait_for(_tcp_exchange(question.wire, server), timeout)
    except TimeoutError:
        raise _Unusable("no answer over TCP in time") from None
    _check_size(data, question.max_records)
    response = dns.message.from_wire(data)
    if not question.request.is_response(response):
        raise _Unusable("answered another question over TCP")
    return response


async def _tcp_exchange(wire: bytes, server: Nameserver) -> bytes:
    """Send ``wire`` with its length (RFC 1035 §4.2.2); return the reply's octets."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(len(wire).to_bytes(2, "big") + wire)
        length = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(length)
    finally:
        writer.close()


def _check_size(message: bytes, max_records: int) -> None:
    """Raise AnswerTooLarge if ``message``'s answer section is over the limit."""
    count = int.from_bytes(message[6:8], "big")  # ANCOUNT (RFC 1035 §4.1.1)
    if count > max_records:
        raise AnswerTooLarge(f"answer of {count} records, more than {max_records}")


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
