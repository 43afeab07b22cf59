"""A DNS answer cache shared by every connection of the daemon.

Answers are kept for their TTL, clamped to a configured floor and ceiling;
negative answers (NXDOMAIN, no data) are kept too, for the TTL their SOA
gives (RFC 2308 §5); temporary failures (timeouts, SERVFAIL) only for a
short bound, so a broken server is not hammered but a recovered one is
soon asked again. The number of entries is bounded (least recently used
goes first), and identical queries in flight are coalesced: a burst of
connections that forge the same domain sends one query.

Everything that changes the cache runs on the daemon's one event loop
thread. peek() is also called from libmilter's threads (a check answered
from the cache without going through the loop): it only reads, and each
step it takes on the OrderedDict is atomic under the GIL.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from spf_milter.spf.lookup import DnsError

T = TypeVar("T")
Key = tuple[str, str]  # (record type, lower-case name)

MAX_ENTRIES: Final = 10_000
MIN_TTL: Final = 0.0
MAX_TTL: Final = 3600.0
ERROR_TTL: Final = 2.0


class NotCached(Exception):
    """The answer is not in the cache (see DnsLookup.cached_only)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    value: tuple[Any, ...] | DnsError
    expires: float


@dataclass(slots=True)
class CacheStats:
    """Counters for metrics and benchmarks."""

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    evictions: int = 0


class DnsCache:
    """TTL-bounded, size-bounded cache of DNS answers with in-flight coalescing."""

    def __init__(
        self,
        *,
        max_entries: int = MAX_ENTRIES,
        min_ttl: float = MIN_TTL,
        max_ttl: float = MAX_TTL,
        error_ttl: float = ERROR_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.error_ttl = error_ttl
        self.clock = clock
        self.stats = CacheStats()
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._inflight: dict[Key, asyncio.Task[tuple[Any, ...]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: Key) -> list[Any] | None:
        """Return a fresh cached answer without waiting, or None on a miss.

        The warm path: no coroutine, no closure. A cached error is raised.
        """
        entry = self._entries.get(key)
        if entry is None or entry.expires <= self.clock():
            return None
        self.stats.hits += 1
        try:  # noqa: SIM105 - contextlib.suppress costs more on this hot path
            self._entries.move_to_end(key)
        except KeyError:
            pass  # evicted meanwhile by the event loop thread: the value stands
        value = entry.value
        return list(value) if type(value) is tuple else _unpack(value)

    async def get(
        self, key: Key, fetch: Callable[[], Awaitable[tuple[tuple[T, ...], float]]]
    ) -> list[T]:
        """Return the cached answer for ``key``, or fetch it (value, TTL) once.

        A DnsError from ``fetch`` is kept for ``error_ttl`` and raised again
        to every caller in that time.
        """
        entry = self._entries.get(key)
        if entry is not None:
            if entry.expires > self.clock():
                self.stats.hits += 1
                self._entries.move_to_end(key)
                return _unpack(entry.value)
            del self._entries[key]
        task = self._inflight.get(key)
        if task is None:
            self.stats.misses += 1
            task = asyncio.ensure_future(self._fetch(key, fetch))
            task.add_done_callback(_retrieve)
            self._inflight[key] = task
        else:
            self.stats.coalesced += 1
        # shield: one caller giving up (its check timed out) must not cancel
        # the query the others wait for.
        return list(await asyncio.shield(task))

    async def _fetch(
        self, key: Key, fetch: Callable[[], Awaitable[tuple[tuple[Any, ...], float]]]
    ) -> tuple[Any, ...]:
        try:
            value, ttl = await fetch()
        except DnsError as error:
            self._store(key, error, self.error_ttl)
            raise
        finally:
            self._inflight.pop(key, None)
        self._store(key, value, min(max(ttl, self.min_ttl), self.max_ttl))
        return value

    def _store(self, key: Key, value: tuple[Any, ...] | DnsError, ttl: float) -> None:
        if ttl <= 0 or self.max_entries <= 0:
            return
        self._entries[key] = _Entry(value, self.clock() + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.stats.evictions += 1


def _unpack(value: tuple[Any, ...] | DnsError) -> list[Any]:
    if isinstance(value, DnsError):
        # A fresh exception each time: re-raising one object would grow
        # its traceback with every cache hit.
        raise type(value)(value.name, value.rdtype, value.reason)
    return list(value)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a shared query's exception as seen, even if every caller gave up."""
    if not task.cancelled():
        task.exception()
