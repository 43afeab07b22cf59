"""Run coroutines eagerly: to the end at once when they never have to wait.

A warm check finds every DNS answer in a cache, so its coroutines finish
without ever yielding to the event loop. Starting them by hand skips the
scheduling that only a real wait needs (a task per parallel lookup, a timer
for the time limit); a coroutine that does wait is handed to the event loop
exactly where it stopped, so a cold check still overlaps its queries.
Python 3.12's eager task factory does the same for tasks; this works on 3.11.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator, Iterable
from typing import Any, Final, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=Exception)


async def run_eagerly(coro: Coroutine[Any, Any, T], time_limit: float) -> T:
    """Await ``coro``; a time limit is armed only if it has to wait.

    Raise TimeoutError if it waits longer than ``time_limit`` seconds.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    async with asyncio.timeout(time_limit):
        return await _resume(coro, yielded)


async def await_noting_wait(coro: Coroutine[Any, Any, T]) -> tuple[T, bool]:
    """Await ``coro``; return its value and whether it had to wait."""
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value, False
    return await _resume(coro, yielded), True


def start_in_background(coro: Coroutine[Any, Any, Any]) -> bool:
    """Run ``coro`` for its side effects; its value and errors are dropped.

    It is started at once; only if it has to wait does it become a task of
    the running event loop (kept referenced until it ends). Without a
    running loop, a coroutine that has to wait is closed. While
    MAX_BACKGROUND of them wait already, ``coro`` is closed unstarted, so a
    flood of work that waits cannot pile up tasks (and sockets) without
    bound. Return whether it was started.
    """
    if len(_BACKGROUND) >= MAX_BACKGROUND:
        coro.close()
        return False
    try:
        yielded = coro.send(None)
    except Exception:  # noqa: BLE001 - done (StopIteration) or failed: either way, over
        return True
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no running event loop: nothing could wait
        coro.close()
        return True
    task = loop.create_task(_resume(coro, yielded))
    _BACKGROUND.add(task)
    task.add_done_callback(_forget)
    return True


MAX_BACKGROUND: Final = 256  # coroutines of start_in_background() waiting at once
_BACKGROUND: set[asyncio.Task[Any]] = set()


def _forget(task: asyncio.Task[Any]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: asyncio logs no "never retrieved"


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


async def gather_eagerly(
    coros: Iterable[Coroutine[Any, Any, T]], errors: type[E]
) -> list[T | E]:
    """Run ``coros`` concurrently; return their results or ``errors``, in order.

    Each one is started at once; only those that have to wait become tasks.
    Any other exception propagates, as from asyncio.gather().
    """
    results: list[T | E | None] = []
    waiting: dict[int, asyncio.Future[T]] = {}
    for index, coro in enumerate(coros):
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            results.append(stop.value)
            continue
        except errors as error:
            results.append(error)
            continue
        results.append(None)
        waiting[index] = asyncio.ensure_future(_resume(coro, yielded))
    if waiting:
        answers = await asyncio.gather(*waiting.values(), return_exceptions=True)
        for index, answer in zip(waiting, answers, strict=True):
            if isinstance(answer, BaseException) and not isinstance(answer, errors):
                raise answer
            results[index] = answer
    return results  # type: ignore[return-value]


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """Go on with a coroutine that was started by hand and stopped at ``yielded``.

    What the coroutine yielded (a future, or None for a bare yield) goes up
    to the task running us, which waits for it as it would have for the
    coroutine itself; whatever the task sends or throws goes back down.
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as thrown:  # noqa: BLE001 - forwarded, not handled
            try:
                yielded = coro.throw(thrown)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            continue
        try:
            yielded = coro.send(sent)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
