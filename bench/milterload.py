"""Load a milter with concurrent Postfix-like sessions and measure it.

One run::

    .venv/bin/python bench/milterload.py --milter unix:/run/x.sock --pid PID \\
        --workload mixed --concurrency 50 --seconds 10 [--json]

The whole matrix, ours against Debian's pyspf-milter, in a private network
namespace with its own DNS server (see bench/README.md, "Milter under load")::

    .venv/bin/python bench/milterload.py --matrix [--quick]

N workers each send one message per milter connection (bench/mtaflow.py),
back to back, until the time or the message count runs out. Messages that
start during the warm-up are not counted; a message counts for throughput
when it ends inside the measured window, and for latency when it also
started there. Latency runs from connect() to the milter's decision on
the message. With ``--pid``, the milter's CPU time over the window comes
from /proc/PID/stat, and its memory and threads at the end from
/proc/PID/status.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parents[1] / "tests"),
]

import procstat  # noqa: E402
from loadshapes import WORKLOADS, Workload  # noqa: E402
from milterclient import Endpoint  # noqa: E402
from milterwire import ProtocolError  # noqa: E402
from mtaflow import HELO_ONLY, Outcome, deliver  # noqa: E402

MESSAGE_TIMEOUT: Final = 60.0  # above any milter's 20 s check limit
MAX_MESSAGES: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One run: which milter, what traffic, how much, for how long."""

    endpoint: Endpoint
    workload: str
    concurrency: int
    seconds: float
    warmup: float = 1.0
    max_messages: int = MAX_MESSAGES
    timeout: float = MESSAGE_TIMEOUT
    pid: int | None = None
    generation_base: int = 0
    dns_pid: int | None = None  # the DNS server's pid, for its CPU time


@dataclass(slots=True)
class LoadResult:
    """What a run measured; times in milliseconds, memory in MiB."""

    messages: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    verdicts: Counter[str] = field(default_factory=Counter)
    spf: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    milter_cpu_ms: float = 0.0  # per message
    client_cpu_ms: float = 0.0  # per message, this process
    dns_cpu_ms: float = 0.0  # per message, the DNS server
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    threads: int = 0

    @property
    def errors(self) -> int:
        return sum(n for v, n in self.verdicts.items() if v.startswith("error"))

    @property
    def timeouts(self) -> int:
        return self.verdicts["timeout"]

    def to_dict(self) -> dict[str, object]:
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs.
        data: dict[str, object] = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self)
        }
        for name in ("verdicts", "spf", "unexpected"):
            data[name] = dict(getattr(self, name))
        data.update(errors=self.errors, timeouts=self.timeouts)
        return data


@dataclass(slots=True)
class _Window:
    """The measured window: its samples and the clocks at its start."""

    start: float = 0.0
    open: bool = False
    latencies: list[float] = field(default_factory=list)
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)
    milter_cpu: float = 0.0
    client_cpu: float = 0.0
    dns_cpu: float = 0.0


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _send(spec: LoadSpec, workload: Workload, n: int) -> tuple[str, Outcome]:
    message = workload.message(n)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(spec.timeout):  # no task per message
            outcome = await deliver(spec.endpoint, message, n)
    except TimeoutError:
        outcome = Outcome("timeout", "", time.perf_counter() - start)
    except (OSError, EOFError, ProtocolError) as error:
        kind = f"error:{type(error).__name__}"
        outcome = Outcome(kind, "", time.perf_counter() - start)
    return message.shape + ":" + message.expected, outcome


async def run_load(spec: LoadSpec) -> LoadResult:
    """Run ``spec`` and return its measurements."""
    workload = Workload(spec.workload, spec.generation_base)
    window = _Window()
    loop = asyncio.get_running_loop()
    begin = time.perf_counter()
    deadline = begin + spec.warmup + spec.seconds
    counter = iter(range(spec.max_messages))

    def open_window() -> None:
        window.start, window.open = time.perf_counter(), True
        window.milter_cpu = procstat.cpu_seconds(spec.pid) if spec.pid else 0.0
        window.client_cpu = _client_cpu()
        window.dns_cpu = procstat.cpu_seconds(spec.dns_pid) if spec.dns_pid else 0.0

    async def worker() -> None:
        for n in counter:
            if time.perf_counter() >= deadline:
                return
            counted = window.open
            key, outcome = await _send(spec, workload, n)
            if window.open:
                window.outcomes.append((key, outcome))
                if counted:
                    window.latencies.append(outcome.seconds)

    handle = loop.call_later(spec.warmup, open_window)
    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    handle.cancel()
    if not window.open:
        open_window()
    return _summarise(spec, window)


def _summarise(spec: LoadSpec, window: _Window) -> LoadResult:
    elapsed = time.perf_counter() - window.start
    result = LoadResult(messages=len(window.outcomes), seconds=elapsed)
    count = max(result.messages, 1)
    result.rate = result.messages / elapsed if elapsed > 0 else 0.0
    for key, outcome in window.outcomes:
        result.verdicts[outcome.verdict] += 1
        result.spf[outcome.spf or "-"] += 1
        shape, _, expected = key.partition(":")
        if outcome.spf != expected and (expected, outcome.spf) != ("none", HELO_ONLY):
            result.unexpected[f"{shape}:{outcome.spf or '-'}"] += 1
    latencies = sorted(seconds * 1000 for seconds in window.latencies)
    if len(latencies) >= 2:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        result.p50, result.p95, result.p99 = cuts[49], cuts[94], cuts[98]
    elif latencies:
        result.p50 = result.p95 = result.p99 = latencies[0]
    result.max = latencies[-1] if latencies else 0.0
    result.mean = statistics.fmean(latencies) if latencies else 0.0
    result.client_cpu_ms = (_client_cpu() - window.client_cpu) * 1000 / count
    if spec.dns_pid:
        dns_cpu = procstat.cpu_seconds(spec.dns_pid) - window.dns_cpu
        result.dns_cpu_ms = dns_cpu * 1000 / count
    if spec.pid:
        milter_cpu = procstat.cpu_seconds(spec.pid) - window.milter_cpu
        result.milter_cpu_ms = milter_cpu * 1000 / count
        memory = procstat.memory(spec.pid)
        result.rss_mb, result.peak_rss_mb = memory.rss_mb, memory.peak_rss_mb
        result.threads = memory.threads
    return result


def describe(result: LoadResult) -> str:
    """Return a human summary of one run."""
    return (
        f"{result.messages} messages in {result.seconds:.1f} s: "
        f"{result.rate:,.0f}/s, p50 {result.p50:.1f} ms, p95 {result.p95:.1f} ms, "
        f"p99 {result.p99:.1f} ms, max {result.max:.1f} ms; "
        f"verdicts {dict(result.verdicts)}; spf {dict(result.spf)}; "
        f"unexpected {dict(result.unexpected)}; milter CPU "
        f"{result.milter_cpu_ms:.2f} ms/msg, client CPU "
        f"{result.client_cpu_ms:.2f} ms/msg; RSS {result.rss_mb:.1f} MiB "
        f"(peak {result.peak_rss_mb:.1f}), {result.threads} threads"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--matrix", action="store_true", help="run the matrix")
    parser.add_argument("--milter", help="unix:/path or inet:HOST:PORT")
    parser.add_argument("--pid", type=int, help="the milter's pid, for /proc")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="mixed")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--max-messages", type=int, default=MAX_MESSAGES)
    parser.add_argument("--timeout", type=float, default=MESSAGE_TIMEOUT)
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one load, or hand over to the matrix."""
    raw = sys.argv[1:] if argv is None else argv
    if "--matrix" in raw:
        import loadmatrix  # only the matrix needs it

        return loadmatrix.main([arg for arg in raw if arg != "--matrix"])
    args = _parser().parse_args(raw)
    if not args.milter:
        _parser().error("--milter is required (or --matrix)")
    spec = LoadSpec(
        Endpoint.parse(args.milter),
        args.workload,
        args.concurrency,
        args.seconds,
        args.warmup,
        args.max_messages,
        args.timeout,
        args.pid,
        generation_base=time.time_ns() // 1000 % 10**12,
    )
    result = asyncio.run(run_load(spec))
    print(json.dumps(result.to_dict()) if args.json else describe(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
