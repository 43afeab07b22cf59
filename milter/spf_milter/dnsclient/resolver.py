"""The production ``Lookup``: the engine's questions as DNS queries.

It turns the engine's five questions into queries for the stub resolver of
query.py, and its answers and failures into the values and ``DnsError``
subclasses of ``spf_milter.spf.lookup``, through the shared cache
(cache.py) when there is one. With query.py, the only module that imports
dnspython.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver

from spf_milter.config.endpoints import parse_nameserver
from spf_milter.config.model import Nameserver
from spf_milter.dnsclient.cache import DnsCache, NotCached
from spf_milter.dnsclient.query import (
    AnswerTooLarge,
    QueryFailed,
    QueryTimeout,
    StubResolver,
)
from spf_milter.spf.lookup import (
    DnsAnswerTooLarge,
    DnsServerFailure,
    DnsTimeout,
    Lookup,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "DnsLookup",
    "Nameserver",
    "parse_nameserver",
    "system_resolver",
]

DEFAULT_TIMEOUT: Final = 5.0  # seconds per query, retries included
RESOLV_CONF: Final = "/etc/resolv.conf"

# Record types as the cache names them, and as dnspython does.
_TXT: Final = ("TXT", dns.rdatatype.TXT)
_A: Final = ("A", dns.rdatatype.A)
_AAAA: Final = ("AAAA", dns.rdatatype.AAAA)
_MX: Final = ("MX", dns.rdatatype.MX)
_PTR: Final = ("PTR", dns.rdatatype.PTR)

R = TypeVar("R", bound=dns.rdata.Rdata)
V = TypeVar("V")


def _make_resolver(nameservers: Sequence[Nameserver]) -> StubResolver:
    """Return a resolver for ``nameservers``, or the system's if there are none."""
    return StubResolver(nameservers) if nameservers else system_resolver()


def system_resolver(resolv_conf: str = RESOLV_CONF) -> StubResolver:
    """Return a resolver for the ``nameserver`` lines of ``resolv_conf``.

    Its ``options timeout:`` is the time each server gets to answer. Raise
    ValueError, naming the file, if it names no nameserver.
    """
    try:
        system = dns.resolver.Resolver(filename=resolv_conf)
    except dns.resolver.NoResolverConfiguration as exc:
        raise ValueError(f"no nameservers given and none in {resolv_conf}") from exc
    servers = [
        Nameserver(server, system.port)
        if isinstance(server, str)
        else Nameserver(server.address, server.port)
        for server in system.nameservers
        if isinstance(server, str | dns.nameserver.Do53Nameserver)
    ]
    if not servers:
        raise ValueError(f"no nameservers given and none in {resolv_conf}")
    return StubResolver(servers, attempt_timeout=system.timeout)


def _absolute_name(name: str) -> dns.name.Name | None:
    """Return ``name`` as an absolute DNS name, or None if it cannot be one.

    Labels are taken verbatim (no IDNA, no backslash escapes): the engine
    hands over names from DNS data and SMTP, which must reach the wire
    unchanged. Non-ASCII text is sent as its UTF-8 bytes.
    """
    labels = name.removesuffix(".").split(".")
    try:
        return dns.name.Name([*(_label(label) for label in labels), b""])
    except (
        UnicodeEncodeError,
        dns.name.EmptyLabel,
        dns.name.LabelTooLong,
        dns.name.NameTooLong,
    ):
        return None


def _label(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _name_text(name: dns.name.Name) -> str:
    """Return ``name`` as the engine writes names: verbatim, no trailing dot."""
    return ".".join(
        label.decode("utf-8", "surrogateescape") for label in name.labels[:-1]
    )


class DnsLookup:
    """``Lookup`` over DNS, with a bounded time per query and an optional cache.

    The daemon gives every Lookup it builds the same DnsCache, so answers
    are shared by all connections and survive a reload.
    """

    def __init__(
        self,
        nameservers: Sequence[Nameserver] = (),
        timeout: float = DEFAULT_TIMEOUT,
        cache: DnsCache | None = None,
        on_query: Callable[[str, float], None] | None = None,
    ) -> None:
        self._resolver = _make_resolver(nameservers)
        self._timeout = timeout
        self._cache = cache
        self._on_query = on_query  # (record type, seconds) of each query sent

    def cached_only(self) -> Lookup | None:
        """Return a Lookup that answers from the cache or raises NotCached.

        It never waits and never needs the event loop, so a check whose
        answers are all cached can run in the thread that wants it. None
        when there is no cache.
        """
        return None if self._cache is None else _CachedAnswers(self._cache)

    # Each type looks in the cache before creating any coroutine: on a busy
    # daemon's warm path that is most of the work.

    async def txt(self, name: str) -> list[bytes]:
        """Return the TXT records of ``name``, each one's strings joined."""
        hit = self._peek("TXT", name)
        return hit if hit is not None else await self._lookup(name, _TXT, _txt_values)

    async def a(self, name: str) -> list[ipaddress.IPv4Address]:
        """Return the A records of ``name``."""
        hit = self._peek("A", name)
        return hit if hit is not None else await self._lookup(name, _A, _a_values)

    async def aaaa(self, name: str) -> list[ipaddress.IPv6Address]:
        """Return the AAAA records of ``name``."""
        hit = self._peek("AAAA", name)
        return hit if hit is not None else await self._lookup(name, _AAAA, _aaaa_values)

    async def mx(self, name: str) -> list[str]:
        """Return the exchanges of ``name``'s MX records, lowest preference first."""
        hit = self._peek("MX", name)
        return hit if hit is not None else await self._lookup(name, _MX, _mx_values)

    async def ptr(self, name: str) -> list[str]:
        """Return the PTR targets of ``name``."""
        hit = self._peek("PTR", name)
        return hit if hit is not None else await self._lookup(name, _PTR, _ptr_values)

    def _peek(self, rdtype: str, name: str) -> list[Any] | None:
        if self._cache is None:
            return None
        return self._cache.peek((rdtype, name.lower()))

    async def _lookup(
        self,
        name: str,
        rdtype: tuple[str, dns.rdatatype.RdataType],
        convert: Callable[[Sequence[dns.rdata.Rdata]], tuple[V, ...]],
    ) -> list[V]:
        """Ask the DNS, through the cache if any (which joins a query in flight)."""
        cache = self._cache
        key = (rdtype[0], name.lower())

        async def fetch() -> tuple[tuple[V, ...], float]:
            records, ttl = await self._query(name, rdtype[1])
            return convert(records), ttl

        if cache is None:
            values, _ = await fetch()
            return list(values)
        return await cache.get(key, fetch)

    async def _query(
        self, name: str, rdtype: dns.rdatatype.RdataType
    ) -> tuple[Sequence[dns.rdata.Rdata], float]:
        """Return the records of ``name``/``rdtype`` and how long they may be kept.

        NXDOMAIN and NODATA are empty answers, kept for their SOA's negative
        TTL (RFC 2308 §5), which dnspython's chaining result computes.
        """
        qname = _absolute_name(name)
        if qname is None:
            # Such a name cannot exist in the DNS (RFC 1035 §2.3.4), so no
            # server could hold records for it: an empty answer, as for
            # NXDOMAIN (RFC 7208 §4.3 lets a check end at malformed names).
            return [], 0.0
        started = time.monotonic()
        try:
            return await self._resolve(name, qname, rdtype)
        finally:
            if self._on_query is not None:
                self._on_query(rdtype.name, time.monotonic() - started)

    async def _resolve(
        self, name: str, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[Sequence[dns.rdata.Rdata], float]:
        try:
            answer = await self._resolver.resolve(qname, rdtype, self._timeout)
        except QueryTimeout as exc:
            raise DnsTimeout(name, rdtype.name, str(exc)) from exc
        except AnswerTooLarge as exc:
            raise DnsAnswerTooLarge(name, rdtype.name, str(exc)) from exc
        except QueryFailed as exc:
            # SERVFAIL, REFUSED, a CNAME loop, a broken answer from every
            # server: the answer stays unknown.
            raise DnsServerFailure(name, rdtype.name, str(exc)) from exc
        return answer.records, answer.ttl


class _CachedAnswers:
    """The Lookup of DnsLookup.cached_only(): cached answers or NotCached."""

    def __init__(self, cache: DnsCache) -> None:
        self._cache = cache

    def _answer(self, rdtype: str, name: str) -> list[Any]:
        hit = self._cache.peek((rdtype, name.lower()))
        if hit is None:
            raise NotCached(f"{rdtype} {name}")
        return hit

    async def txt(self, name: str) -> list[bytes]:
        """Return the cached TXT records of ``name``."""
        return self._answer("TXT", name)

    async def a(self, name: str) -> list[ipaddress.IPv4Address]:
        """Return the cached A records of ``name``."""
        return self._answer("A", name)

    async def aaaa(self, name: str) -> list[ipaddress.IPv6Address]:
        """Return the cached AAAA records of ``name``."""
        return self._answer("AAAA", name)

    async def mx(self, name: str) -> list[str]:
        """Return the cached MX exchanges of ``name``."""
        return self._answer("MX", name)

    async def ptr(self, name: str) -> list[str]:
        """Return the cached PTR targets of ``name``."""
        return self._answer("PTR", name)


def _select(
    records: Sequence[dns.rdata.Rdata],
    cls: type[R],
    convert: Callable[[R], V],
) -> tuple[V, ...]:
    """Convert the records of class ``cls`` (the only class an answer holds)."""
    return tuple(convert(r) for r in records if isinstance(r, cls))


def _txt_values(records: Sequence[dns.rdata.Rdata]) -> tuple[bytes, ...]:
    # RFC 7208 §3.3: the strings of one record are joined with no separator.
    return _select(records, dns.rdtypes.ANY.TXT.TXT, lambda r: b"".join(r.strings))


def _a_values(records: Sequence[dns.rdata.Rdata]) -> tuple[ipaddress.IPv4Address, ...]:
    return _select(
        records, dns.rdtypes.IN.A.A, lambda r: ipaddress.IPv4Address(r.address)
    )


def _aaaa_values(
    records: Sequence[dns.rdata.Rdata],
) -> tuple[ipaddress.IPv6Address, ...]:
    return _select(
        records, dns.rdtypes.IN.AAAA.AAAA, lambda r: ipaddress.IPv6Address(r.address)
    )


def _mx_values(records: Sequence[dns.rdata.Rdata]) -> tuple[str, ...]:
    mxs = sorted(_select(records, dns.rdtypes.ANY.MX.MX, lambda r: r), key=_preference)
    return tuple(_name_text(mx.exchange) for mx in mxs)


def _preference(mx: dns.rdtypes.ANY.MX.MX) -> int:
    return int(mx.preference)


def _ptr_values(records: Sequence[dns.rdata.Rdata]) -> tuple[str, ...]:
    return _select(records, dns.rdtypes.ANY.PTR.PTR, lambda r: _name_text(r.target))
