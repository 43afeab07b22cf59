"""A fixed CPU load beside the benchmark: N busy processes, each one loop.

    python -m bench.cpuhog SECONDS PARENT_PID   (one busy loop)

``hogs(n, seconds)`` starts n of them for the contention part
(bench/loadcontention.py) and kills them when its block ends, however it
ends. Each loop is bounded twice over: it stops after ``SECONDS``, and as
soon as the process that started it is gone (a killed benchmark leaves
no hog behind).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from bench import procstat

SPIN_BATCH: Final = 200_000  # iterations between two looks at the clock
REPO: Final = Path(__file__).resolve().parents[1]
STOP_TIMEOUT: Final = 5.0


def spin(seconds: float, parent: int) -> int:
    """Keep one CPU busy for ``seconds`` or until ``parent`` is gone."""
    end = time.monotonic() + seconds
    batches = 0
    while time.monotonic() < end and os.getppid() == parent:
        for _ in range(SPIN_BATCH):
            pass
        batches += 1
    return batches


@contextmanager
def hogs(count: int, seconds: float) -> Iterator[list[int]]:
    """Run ``count`` busy loops of at most ``seconds``; yield their pids."""
    processes: list[subprocess.Popen[bytes]] = []
    command = [sys.executable, "-m", "bench.cpuhog", str(seconds), str(os.getpid())]
    try:
        for _ in range(count):
            processes.append(subprocess.Popen(command, cwd=REPO))
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait(STOP_TIMEOUT)


def cpu_seconds(pids: Sequence[int]) -> float:
    """Return the CPU time the hogs ``pids`` have used so far."""
    return sum(procstat.cpu_seconds(pid) for pid in pids)


def main(argv: Sequence[str]) -> int:
    """Spin for ``argv[0]`` seconds while ``argv[1]`` (the parent) lives."""
    spin(float(argv[0]), int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
