"""How the milter runs its SPF checks: every speed-up outside RFC 7208, in one place.

The engine (spf/) computes a result; this module decides where and how the
computation runs, so that neither the engine nor the milter glue has to:

- a check whose DNS answers are all in the cache runs at once, in the
  calling thread (a libmilter thread), with no event loop and no task;
- any other check runs on the shared event loop, with prefetching: when a
  record has to come from the DNS, the first query of each of its terms is
  started at once (``Prefetcher``), so that terms evaluated one after the
  other find their answers already on the way.

A ``CheckRunner`` is an object the transaction flow is given (one per
service, one per ``spf-milter check --config`` run): what waits in the
background is bounded per runner, not by module-level state, and the
engine's memo of parsed records and names (spf.Memo) is the runner's, so
it lives as long as the service and stays warm across reloads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, Final, Generic, TypeVar

from spf_milter.dnsclient.cache import NotCached
from spf_milter.eventloop import EventLoop
from spf_milter.spf import Lookup, Memo
from spf_milter.spf.eager import resume
from spf_milter.spf.lookup import Prefetch

T = TypeVar("T")
# A check: given the Lookup to use and the prefetcher (None: do not prefetch).
Check = Callable[[Lookup, Prefetch | None], Coroutine[Any, Any, T]]

MAX_BACKGROUND: Final = 256  # prefetches of one runner waiting at once


class Finished(Generic[T]):
    """A check that ended as it was started: a future with no lock to take.

    Most checks of a busy daemon end so, from the cache; a
    concurrent.futures.Future would cost a Condition and its lock for each.
    """

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def result(self, timeout: float | None = None) -> T:
        return self._value

    def done(self) -> bool:
        return True

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return None

    def add_done_callback(self, fn: Callable[[Finished[T]], object]) -> None:
        fn(self)


class WouldWait(RuntimeError):
    """run_now() was given a coroutine that has to wait."""


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end in the calling thread; it must never wait.

    For a check whose DNS answers all come from a cache: no event loop, no
    task. Raise WouldWait (and close the coroutine) if it has to wait.
    """
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise WouldWait("the coroutine had to wait")


class Prefetcher:
    """Start queries in the background, at most ``limit`` waiting at once.

    The engine's ``Prefetch`` (spf.lookup): a query is started at once; only
    if it has to wait does it become a task of the running event loop, kept
    referenced here until it ends. Its value and errors are dropped: it only
    warms the Lookup's cache. A flood of work that waits cannot pile up
    tasks (and sockets) without bound: past ``limit``, queries are dropped.
    """

    def __init__(self, limit: int = MAX_BACKGROUND) -> None:
        self.limit = limit
        self._waiting: set[asyncio.Task[Any]] = set()

    @property
    def waiting(self) -> int:
        """Return how many prefetches wait for the DNS now."""
        return len(self._waiting)

    async def fetch(self, query: Coroutine[Any, Any, T]) -> tuple[T, bool]:
        """Await ``query``; return its value and whether it had to wait."""
        try:
            yielded = query.send(None)
        except StopIteration as stop:
            return stop.value, False
        return await resume(query, yielded), True

    def start(self, query: Coroutine[Any, Any, object]) -> bool:
        """Run ``query`` for its side effects; return whether it was started.

        Without a running event loop, a query that has to wait is closed.
        """
        if len(self._waiting) >= self.limit:
            query.close()
            return False
        try:
            yielded = query.send(None)
        except Exception:  # noqa: BLE001 - done (StopIteration) or failed: over
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no running event loop: nothing could wait
            query.close()
            return True
        task = loop.create_task(resume(query, yielded))
        self._waiting.add(task)
        task.add_done_callback(self._forget)
        return True

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._waiting.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: asyncio logs no "never retrieved"


class CheckRunner:
    """Run checks from the cache at once, or on the shared event loop.

    ``memo`` is for the checks to give check_host(): the runner keeps it,
    whatever runs them.
    """

    def __init__(
        self,
        loop: EventLoop,
        prefetcher: Prefetcher | None = None,
        memo: Memo | None = None,
    ) -> None:
        self.loop = loop
        self.prefetcher = prefetcher if prefetcher is not None else Prefetcher()
        self.memo = memo if memo is not None else Memo()

    def start(
        self, check: Check[T], lookup: Lookup, cached: Lookup | None
    ) -> Finished[T] | concurrent.futures.Future[T]:
        """Start ``check``; return a future any thread can wait on.

        ``cached`` answers from the DNS cache or raises NotCached (None: no
        cache). With a cache the check runs first on it alone, in this
        thread; only if it needs the DNS does it go to the event loop, with
        prefetching (worth it only with a cache that shares in-flight
        queries).
        """
        if cached is None:
            return self.loop.submit(check(lookup, None))
        try:
            value = run_now(check(cached, None))
        except (NotCached, WouldWait):
            return self.loop.submit(check(lookup, self.prefetcher))
        return Finished(value)
