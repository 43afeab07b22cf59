"""The contention part: both milters with and without a CPU hog beside them.

For each warm shape and concurrency, ours and pyspf-milter run (which one
goes first alternates, as in the matrix) once alone and once with
``--hog N`` busy processes (bench/cpuhog.py) on the machine. Each run
also records the machine's other load while it ran, from /proc/stat: the
busy share of all CPUs minus the benchmark's own processes (milters, DNS
server, load client) and minus the hog, whose share is kept apart. The
load average is no measure of that: it counts runnable threads, the
benchmark's own among them, not CPU time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Final

from bench import cpuhog, loadreport
from bench.loadbench import Bench
from bench.loadclient import LoadResult
from bench.milters import Milter

HOG_MARGIN: Final = 60.0  # seconds a hog may outlive its runs' planned time


@dataclass(frozen=True, slots=True)
class Sharing:
    """Who else used the machine during one run, as shares of all its CPUs."""

    other: float  # busy minus the benchmark's processes and the hog
    hog: float


def measure_shared(
    bench: Bench,
    milter: Milter,
    shape: str,
    concurrency: int,
    hog_pids: tuple[int, ...] = (),
) -> tuple[LoadResult, Sharing]:
    """Run one load; return its result and the machine's other load."""
    started = time.monotonic()
    busy, own = bench.cpu_account()
    hog = cpuhog.cpu_seconds(hog_pids)
    result = bench.measure(milter, shape, concurrency, bench.options.seconds)
    capacity = (time.monotonic() - started) * (os.cpu_count() or 1)
    busy_now, own_now = bench.cpu_account()
    hog_used = cpuhog.cpu_seconds(hog_pids) - hog
    other = busy_now - busy - (own_now - own) - hog_used
    return result, Sharing(max(other / capacity, 0.0), hog_used / capacity)


def _cell(
    bench: Bench, shape: str, concurrency: int, hogs: int, first_ours: bool
) -> dict[str, object]:
    ours, theirs = bench.pair("unix")
    order = (ours, theirs) if first_ours else (theirs, ours)
    planned = 2 * (bench.options.seconds + bench.options.warmup) + HOG_MARGIN
    cell: dict[str, object] = {"shape": shape, "concurrency": concurrency, "hog": hogs}
    with cpuhog.hogs(hogs, planned) as pids:
        for milter in order:
            side = "ours" if milter is ours else "theirs"
            result, sharing = measure_shared(
                bench, milter, shape, concurrency, tuple(pids)
            )
            cell[side], cell[f"{side}_sharing"] = result, sharing
    return cell


def run_contention(bench: Bench) -> list[dict[str, object]]:
    """Every warm shape x concurrency, without and with the hog, both milters."""
    bench.dns.set_delay(0.0)
    cells: list[dict[str, object]] = []
    for shape in bench.options.warm_shapes:
        for concurrency in bench.options.warm_concurrency:
            for hogs in (0, bench.options.hog):
                # Alternate who goes first from one shape and concurrency to
                # the next; alone and with the hog, the same one.
                first_ours = len(cells) // 2 % 2 == 0
                cells.append(_cell(bench, shape, concurrency, hogs, first_ours))
                print(loadreport.contention_line(cells[-1]), flush=True)
    return cells
