"""A DNS answer cache shared by every connection of the daemon.

Answers are kept for their TTL, clamped to a configured floor and ceiling;
negative answers (NXDOMAIN, no data) are kept too, for the TTL their SOA
gives (RFC 2308 §5); temporary failures (timeouts, SERVFAIL) only for a
short bound, so a broken server is not hammered but a recovered one is
soon asked again. Both the number of entries and the bytes they cost are
bounded (least recently used goes first): an answer is whatever a zone
owner publishes, up to 64 kB of records, and its Python objects cost more
than its wire form. Identical queries in flight are coalesced: a burst of
connections that forge the same domain sends one query.

Everything that changes the cache runs on the daemon's one event loop
thread. peek() is also called from libmilter's threads (a check answered
from the cache without going through the loop): it only reads, and each
step it takes on the OrderedDict is atomic under the GIL.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from spf_milter.config.model import DnsConfig
from spf_milter.spf.lookup import DnsError

T = TypeVar("T")
Key = tuple[str, str]  # (record type, lower-case name)

_DEFAULTS: Final = DnsConfig()  # the bounds spf-milter.yaml defaults to
MAX_ENTRIES: Final = _DEFAULTS.cache_size
MAX_BYTES: Final = _DEFAULTS.cache_max_bytes
# What an entry costs besides its records: the key, the OrderedDict node,
# the _Entry and the value tuple (an upper bound, measured with tracemalloc);
# and each record besides its own object: its slot in the tuple and, for an
# address, the int inside it.
ENTRY_COST: Final = 512
RECORD_COST: Final = 64
MIN_TTL: Final = _DEFAULTS.cache_min_ttl
MAX_TTL: Final = _DEFAULTS.cache_max_ttl
ERROR_TTL: Final = _DEFAULTS.cache_error_ttl


class NotCached(Exception):
    """The answer is not in the cache (see DnsLookup.cached_only)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    value: tuple[Any, ...] | DnsError
    expires: float
    cost: int


@dataclass(slots=True)
class CacheStats:
    """Counters for metrics and benchmarks."""

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    evictions: int = 0
    too_large: int = 0  # answers not kept: alone more than a quarter of max_bytes


class DnsCache:
    """TTL-bounded, size-bounded cache of DNS answers with in-flight coalescing.

    ``bytes`` is the estimated memory of the entries kept (answer_cost),
    never above ``max_bytes``.
    """

    def __init__(
        self,
        *,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        min_ttl: float = MIN_TTL,
        max_ttl: float = MAX_TTL,
        error_ttl: float = ERROR_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
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
            self._drop(key)
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
        cost = answer_cost(key, value)
        if cost * 4 > self.max_bytes:
            self.stats.too_large += 1
            return
        self._drop(key)
        self._entries[key] = _Entry(value, self.clock() + ttl, cost)
        self.bytes += cost
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.cost
            self.stats.evictions += 1

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.cost


def answer_cost(key: Key, value: tuple[Any, ...] | DnsError) -> int:
    """Return an upper bound of the bytes an entry for ``value`` keeps alive."""
    cost = ENTRY_COST + sys.getsizeof(key[1])
    if isinstance(value, DnsError):
        return cost + 3 * sys.getsizeof(str(value))  # message, name, reason
    return cost + sum(sys.getsizeof(record) + RECORD_COST for record in value)


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
