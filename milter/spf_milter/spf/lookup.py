"""The DNS interface the engine is given, and the errors it may raise.

The engine never talks to the network itself. Whoever calls check_host()
passes an object with these five coroutines; the daemon passes one built on
dnspython (spf_milter.dnsclient.resolver), tests pass an in-memory zone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class DnsError(Exception):
    """A DNS query failed in a way that makes the answer unknown."""

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        super().__init__(f"{rdtype} {name}: {reason}")
        self.name = name
        self.rdtype = rdtype
        self.reason = reason


class DnsTimeout(DnsError):
    """No answer arrived in time."""


class DnsServerFailure(DnsError):
    """The server answered SERVFAIL, REFUSED or another error code."""


class DnsAnswerTooLarge(DnsError):
    """The answer held more records than the resolver reads for one query.

    The records are published that way, so asking again gives the same:
    the engine makes it a permerror, as it does the limits of §4.6.4.
    """


class Lookup(Protocol):
    """Asynchronous DNS queries, answered from the client's point of view.

    Names are given without a trailing dot. An empty list means the name
    does not exist (NXDOMAIN) or has no records of that type (NODATA):
    RFC 7208 treats both alike and counts both as void lookups (§4.6.4).
    Implementations follow CNAMEs. Anything else that keeps the answer
    from being known raises DnsError (DnsTimeout, DnsServerFailure,
    DnsAnswerTooLarge).
    """

    async def txt(self, name: str) -> list[bytes]:
        """Return the TXT records of ``name``, each one's strings joined (§3.3)."""
        ...

    async def a(self, name: str) -> list[ipaddress.IPv4Address]:
        """Return the A records of ``name``."""
        ...

    async def aaaa(self, name: str) -> list[ipaddress.IPv6Address]:
        """Return the AAAA records of ``name``."""
        ...

    async def mx(self, name: str) -> list[str]:
        """Return ``name``'s MX exchange names, lowest preference first."""
        ...

    async def ptr(self, name: str) -> list[str]:
        """Return the PTR targets of ``name`` (an in-addr.arpa or ip6.arpa name)."""
        ...


class Prefetch(Protocol):
    """Optional: warm a Lookup's shared cache ahead of the evaluation.

    Not part of RFC 7208: a speed-up the caller may give check_host() with a
    Lookup that shares its in-flight queries (the daemon's cached one).
    Every term is still evaluated in order, queried and counted as §4.6.4
    says, so the result and the counts are the same with or without it.
    """

    async def fetch(self, query: Coroutine[Any, Any, T]) -> tuple[T, bool]:
        """Await ``query``; return its value and whether it had to wait."""
        ...

    def start(self, query: Coroutine[Any, Any, object]) -> bool:
        """Start ``query`` in the background; False if it was dropped unstarted."""
        ...
