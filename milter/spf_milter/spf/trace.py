"""A record of how a check went: each term, each DNS query and answer.

``spf-milter check --trace`` prints it so that an administrator can see why a
result came out. The engine writes to a Trace only when one is given, so
ordinary checks pay nothing for it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from spf_milter.spf.lookup import DnsError, Lookup

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TraceLine:
    """One event; ``depth`` is the include/redirect nesting level."""

    depth: int
    text: str


@dataclass(slots=True)
class Trace:
    """The events of one check, in the order they happened."""

    lines: list[TraceLine] = field(default_factory=list)
    depth: int = 0

    def note(self, text: str) -> None:
        """Record an event at the current depth."""
        self.lines.append(TraceLine(self.depth, text))

    def render(self) -> list[str]:
        """Return the events as indented lines."""
        return ["  " * line.depth + line.text for line in self.lines]


class TracedLookup:
    """A Lookup that notes every query and its answer in a Trace."""

    def __init__(self, lookup: Lookup, trace: Trace) -> None:
        self._lookup = lookup
        self._trace = trace

    async def txt(self, name: str) -> list[bytes]:
        """Query TXT and note the answer."""
        return await self._traced("TXT", name, self._lookup.txt(name), _show_txt)

    async def a(self, name: str) -> list[ipaddress.IPv4Address]:
        """Query A and note the answer."""
        return await self._traced("A", name, self._lookup.a(name), _show_items)

    async def aaaa(self, name: str) -> list[ipaddress.IPv6Address]:
        """Query AAAA and note the answer."""
        return await self._traced("AAAA", name, self._lookup.aaaa(name), _show_items)

    async def mx(self, name: str) -> list[str]:
        """Query MX and note the answer."""
        return await self._traced("MX", name, self._lookup.mx(name), _show_items)

    async def ptr(self, name: str) -> list[str]:
        """Query PTR and note the answer."""
        return await self._traced("PTR", name, self._lookup.ptr(name), _show_items)

    async def _traced(
        self,
        rdtype: str,
        name: str,
        query: Awaitable[list[T]],
        show: Callable[[list[T]], str],
    ) -> list[T]:
        try:
            answer = await query
        except DnsError as error:
            self._trace.note(f"dns {rdtype} {name}: error: {error.reason}")
            raise
        shown = show(answer) if answer else "no records (void)"
        self._trace.note(f"dns {rdtype} {name}: {shown}")
        return answer


def _show_items(answer: list[T]) -> str:
    return ", ".join(str(item) for item in answer)


def _show_txt(answer: list[bytes]) -> str:
    return ", ".join(printable(text) for text in answer)


def printable(text: bytes | str) -> str:
    """Return ``text`` quoted, with anything unprintable backslash-escaped."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    return '"' + text.decode("ascii", "backslashreplace").translate(_ESCAPES) + '"'


_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(32), 127)} | {ord('"'): '\\"'}
