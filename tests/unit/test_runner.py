"""The check runner: warm checks at once, others on the loop, prefetches bounded."""

from __future__ import annotations

import asyncio
import threading

import pytest

from spf_milter.dnsclient.cache import NotCached
from spf_milter.eventloop import EventLoop
from spf_milter.runner import CheckRunner, Prefetcher, WouldWait, run_now
from spf_milter.spf import Lookup
from spf_milter.spf.lookup import Prefetch


async def _answer(value: int, started: list[int]) -> int:
    started.append(value)
    return value


async def _wait_for(gate: asyncio.Event, started: list[int], done: list[int]) -> None:
    started.append(1)
    await gate.wait()
    done.append(1)


async def _fail() -> None:
    raise RuntimeError("a prefetch that fails is nobody's business")


async def _settle(prefetcher: Prefetcher) -> None:
    """Let the loop run until no prefetch waits (bounded)."""
    for _ in range(1000):
        if prefetcher.waiting == 0:
            return
        await asyncio.sleep(0)
    raise AssertionError("prefetches still wait")


def test_a_coroutine_that_never_waits_runs_at_once_without_a_loop() -> None:
    started: list[int] = []
    assert Prefetcher().start(_answer(7, started))
    assert started == [7]


def test_errors_are_dropped() -> None:
    async def run() -> None:
        assert Prefetcher().start(_fail())

    asyncio.run(run())


def test_a_waiting_coroutine_finishes_as_a_task() -> None:
    started: list[int] = []
    done: list[int] = []
    prefetcher = Prefetcher()

    async def run() -> None:
        gate = asyncio.Event()
        assert prefetcher.start(_wait_for(gate, started, done))
        assert started == [1]
        assert done == []
        assert prefetcher.waiting == 1
        gate.set()
        await _settle(prefetcher)

    asyncio.run(run())
    assert done == [1]


def test_no_more_than_the_limit_wait_at_once() -> None:
    started: list[int] = []
    done: list[int] = []
    prefetcher = Prefetcher(limit=3)

    async def run() -> list[bool]:
        gate = asyncio.Event()
        accepted = [prefetcher.start(_wait_for(gate, started, done)) for _ in range(5)]
        gate.set()
        await _settle(prefetcher)
        # Once they are over, there is room again.
        accepted.append(prefetcher.start(_wait_for(gate, started, done)))
        await _settle(prefetcher)
        return accepted

    assert asyncio.run(run()) == [True, True, True, False, False, True]
    assert len(started) == 4
    assert len(done) == 4


def test_two_runners_do_not_share_their_bound() -> None:
    async def run() -> list[bool]:
        gate = asyncio.Event()
        first, second = Prefetcher(limit=1), Prefetcher(limit=1)
        accepted = [
            first.start(_wait_for(gate, [], [])),
            second.start(_wait_for(gate, [], [])),
        ]
        gate.set()
        await _settle(first)
        await _settle(second)
        return accepted

    assert asyncio.run(run()) == [True, True]


def test_run_now_refuses_a_coroutine_that_waits() -> None:
    async def waits() -> None:
        await asyncio.sleep(0)

    assert run_now(_answer(3, [])) == 3
    with pytest.raises(WouldWait):
        run_now(waits())


class _Cold:
    """A cached Lookup whose cache holds nothing."""

    async def txt(self, name: str) -> list[bytes]:
        raise NotCached(name)


@pytest.fixture
def loop() -> EventLoop:
    loop = EventLoop("test-runner")
    loop.start()
    yield loop  # type: ignore[misc]
    loop.stop()


async def _where(lookup: Lookup, prefetch: Prefetch | None) -> tuple[str, bool]:
    await lookup.txt("example.org")
    return threading.current_thread().name, prefetch is not None


class _Warm:
    async def txt(self, name: str) -> list[bytes]:
        return [b"v=spf1 -all"]


def test_a_warm_check_runs_at_once_in_the_calling_thread(loop: EventLoop) -> None:
    runner = CheckRunner(loop)
    future = runner.start(_where, _Warm(), _Warm())  # type: ignore[arg-type]
    assert future.done()
    assert future.result() == (threading.current_thread().name, False)


def test_a_cold_check_runs_on_the_loop_with_prefetching(loop: EventLoop) -> None:
    runner = CheckRunner(loop)
    future = runner.start(_where, _Warm(), _Cold())  # type: ignore[arg-type]
    assert future.result(timeout=30) == ("test-runner", True)


def test_without_a_cache_a_check_runs_on_the_loop_without_prefetching(
    loop: EventLoop,
) -> None:
    runner = CheckRunner(loop)
    future = runner.start(_where, _Warm(), None)  # type: ignore[arg-type]
    assert future.result(timeout=30) == ("test-runner", False)
