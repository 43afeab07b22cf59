"""Coroutines run eagerly, and work started in the background, bounded."""

from __future__ import annotations

import asyncio

import pytest

from spf_milter.spf import eager
from spf_milter.spf.eager import start_in_background


async def _answer(value: int, started: list[int]) -> int:
    started.append(value)
    return value


async def _wait_for(gate: asyncio.Event, started: list[int], done: list[int]) -> None:
    started.append(1)
    await gate.wait()
    done.append(1)


async def _fail() -> None:
    raise RuntimeError("a prefetch that fails is nobody's business")


def test_a_coroutine_that_never_waits_runs_at_once_without_a_loop() -> None:
    started: list[int] = []
    assert start_in_background(_answer(7, started))
    assert started == [7]


def test_errors_are_dropped() -> None:
    async def run() -> None:
        assert start_in_background(_fail())

    asyncio.run(run())


def test_a_waiting_coroutine_finishes_as_a_task() -> None:
    started: list[int] = []
    done: list[int] = []

    async def run() -> None:
        gate = asyncio.Event()
        assert start_in_background(_wait_for(gate, started, done))
        assert started == [1]
        assert done == []
        gate.set()
        await asyncio.sleep(0.01)

    asyncio.run(run())
    assert done == [1]


def test_no_more_than_max_background_wait_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eager, "MAX_BACKGROUND", 3)
    started: list[int] = []
    done: list[int] = []

    async def run() -> list[bool]:
        gate = asyncio.Event()
        accepted = [
            start_in_background(_wait_for(gate, started, done)) for _ in range(5)
        ]
        gate.set()
        await asyncio.sleep(0.01)
        # Once they are over, there is room again.
        accepted.append(start_in_background(_wait_for(gate, started, done)))
        await asyncio.sleep(0.01)
        return accepted

    assert asyncio.run(run()) == [True, True, True, False, False, True]
    assert len(started) == 4
    assert len(done) == 4
