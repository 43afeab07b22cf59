"""An in-memory implementation of the engine's ``Lookup`` protocol.

FakeLookup answers from a ``dnszone.Zone`` exactly as ``spf_milter.dnsclient.resolver``
answers from the same zone served by ``dnsserver.DnsServer``; the
integration tests check that over both openspf suites. No network is used.
Answers are computed once per (type, name) and reused until the zone
changes, so the fake is cheap enough for engine benchmarks.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from helpers.dnszone import Mx, Outcome, Rdata, RdType, Resolution, Zone
from spf_milter.spf.lookup import DnsError, DnsServerFailure, DnsTimeout

# dnspython gives up on CNAME chains this long (dns.message.MAX_CHAIN) and
# the resolver reports a server failure; mirror it so both doubles agree.
MAX_CNAME_CHAIN = 16

T = TypeVar("T")

_ERRORS: dict[Outcome, tuple[type[DnsError], str]] = {
    Outcome.TIMEOUT: (DnsTimeout, "no answer (zone timeout)"),
    Outcome.SERVFAIL: (DnsServerFailure, "SERVFAIL"),
    Outcome.REFUSED: (DnsServerFailure, "REFUSED"),
    Outcome.CNAME_LOOP: (DnsServerFailure, "CNAME loop"),
}


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    """A memoized answer: values, or the error to raise, and a delay."""

    values: tuple[T, ...] = ()
    error: tuple[type[DnsError], str] | None = None
    delay: float = 0.0


class FakeLookup:
    """Answer ``Lookup`` queries from a Zone and record each query made."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.queries: list[tuple[str, str]] = []  # (rdtype, name), in call order
        self._memo: dict[tuple[RdType, str], _Answer[object]] = {}
        self._version = zone.version

    async def txt(self, name: str) -> list[bytes]:
        """Return the TXT records of ``name``, each one's strings joined."""
        return await self._query(RdType.TXT, name, _txt_values)

    async def a(self, name: str) -> list[ipaddress.IPv4Address]:
        """Return the A records of ``name``."""
        return await self._query(RdType.A, name, _a_values)

    async def aaaa(self, name: str) -> list[ipaddress.IPv6Address]:
        """Return the AAAA records of ``name``."""
        return await self._query(RdType.AAAA, name, _aaaa_values)

    async def mx(self, name: str) -> list[str]:
        """Return the exchanges of ``name``'s MX records, lowest preference first."""
        return await self._query(RdType.MX, name, _mx_values)

    async def ptr(self, name: str) -> list[str]:
        """Return the PTR targets of ``name``."""
        return await self._query(RdType.PTR, name, _ptr_values)

    async def _query(
        self,
        rdtype: RdType,
        name: str,
        convert: Callable[[Sequence[Rdata]], tuple[T, ...]],
    ) -> list[T]:
        self.queries.append((str(rdtype), name))
        answer = self._answer(rdtype, name, convert)
        if answer.delay > 0:
            await asyncio.sleep(answer.delay)
        if answer.error is not None:
            error_class, reason = answer.error
            raise error_class(name, str(rdtype), reason)
        return list(answer.values)

    def _answer(
        self,
        rdtype: RdType,
        name: str,
        convert: Callable[[Sequence[Rdata]], tuple[T, ...]],
    ) -> _Answer[T]:
        if self._version != self.zone.version:
            self._memo.clear()
            self._version = self.zone.version
        key = (rdtype, name)
        answer = self._memo.get(key)
        if answer is None:
            answer = _build(self.zone.resolve(name, rdtype), convert)
            self._memo[key] = answer
        return cast(_Answer[T], answer)  # each key's rdtype fixes its T


def _build(
    resolution: Resolution,
    convert: Callable[[Sequence[Rdata]], tuple[T, ...]],
) -> _Answer[object]:
    """Turn a zone Resolution into what the ``Lookup`` caller sees."""
    error = _ERRORS.get(resolution.outcome)
    if error is None and len(resolution.cnames) >= MAX_CNAME_CHAIN:
        error = (DnsServerFailure, "CNAME chain too long")
    if error is not None:
        return _Answer(error=error, delay=resolution.delay)
    # NXDOMAIN and NODATA are both an empty answer (RFC 7208 §4.6.4).
    return _Answer(convert(resolution.records), delay=resolution.delay)


def _txt_values(records: Sequence[Rdata]) -> tuple[bytes, ...]:
    # RFC 7208 §3.3: the strings of one record are joined with no separator.
    return tuple(b"".join(r) for r in records if isinstance(r, tuple))


def _a_values(records: Sequence[Rdata]) -> tuple[ipaddress.IPv4Address, ...]:
    return tuple(r for r in records if isinstance(r, ipaddress.IPv4Address))


def _aaaa_values(records: Sequence[Rdata]) -> tuple[ipaddress.IPv6Address, ...]:
    return tuple(r for r in records if isinstance(r, ipaddress.IPv6Address))


def _mx_values(records: Sequence[Rdata]) -> tuple[str, ...]:
    exchanges = sorted((r for r in records if isinstance(r, Mx)), key=_preference)
    return tuple(mx.exchange for mx in exchanges)


def _preference(mx: Mx) -> int:
    return mx.preference


def _ptr_values(records: Sequence[Rdata]) -> tuple[str, ...]:
    return tuple(r for r in records if isinstance(r, str))
