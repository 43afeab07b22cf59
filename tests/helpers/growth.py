"""Measure how a function's running time grows with the size of its input.

A parser of hostile text must run in time linear in its input. Absolute
times depend on the machine; the ratio of the times of sizes n and 8n does
not: about 8 for linear work, about 64 for quadratic. Each size is timed
several times in this thread's CPU time (a thread waiting for a core is
not counted) and the fastest run counts, so a busy machine can only make
a run slower, never the ratio of two best runs much larger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TypeVar

T = TypeVar("T")

FACTOR: Final = 8
# Linear work gives about FACTOR, quadratic about FACTOR**2: this bound lets
# a noisy machine triple a linear ratio and still catches anything quadratic.
LINEAR_BOUND: Final = 3 * FACTOR
REPEAT: Final = 5


def best_time(run: Callable[[], object], repeat: int = REPEAT) -> float:
    """Return the fastest of ``repeat`` runs of ``run``, in CPU seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        run()
        best = min(best, time.thread_time() - started)
    return best


def growth(make: Callable[[int], T], run: Callable[[T], object], size: int) -> float:
    """Return time(run(make(FACTOR * size))) / time(run(make(size)))."""
    small, large = make(size), make(FACTOR * size)
    run(small)  # warm-up: imports, caches of the regex engine
    return best_time(lambda: run(large)) / best_time(lambda: run(small))
