"""Run coroutines eagerly: to the end at once when they never have to wait.

A warm check finds every DNS answer in a cache, so its coroutines finish
without ever yielding to the event loop. Starting them by hand skips the
scheduling that only a real wait needs (a task per parallel lookup, a timer
for the time limit); a coroutine that does wait is handed to the event loop
exactly where it stopped, so a cold check still overlaps its queries.
Python 3.12's eager task factory does the same for tasks; this works on 3.11.
The values and errors are those of ``asyncio.timeout`` and ``asyncio.gather``:
how the engine awaits, not what it computes. Stateless: whatever runs in the
background on the engine's behalf (prefetching) belongs to the caller's
runner (spf_milter.runner), not to this module.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator, Iterable
from typing import Any, TypeVar

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
        return await resume(coro, yielded)


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
        waiting[index] = asyncio.ensure_future(resume(coro, yielded))
    if waiting:
        answers = await asyncio.gather(*waiting.values(), return_exceptions=True)
        for index, answer in zip(waiting, answers, strict=True):
            if isinstance(answer, BaseException) and not isinstance(answer, errors):
                raise answer
            results[index] = answer
    return results  # type: ignore[return-value]


@types.coroutine
def resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
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
