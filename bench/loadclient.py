"""The load client: concurrent Postfix-like sessions against one milter.

N workers each send one message per milter connection (bench/mtaflow.py),
back to back, until the time or the message count runs out. Messages that
start during the warm-up are not counted; a message counts for throughput
when it ends inside the measured window, and for latency when it also
started there. Latency runs from connect() to the milter's decision on
the message. With ``LoadSpec.pid``, the milter's CPU time over the window
comes from /proc/PID/stat, and its memory and threads at the end from
/proc/PID/status.

Its own module so that the command line (bench/milterload.py) and the
matrix it starts (bench/loadmatrix.py) both import it, and the matrix
never imports the command line back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from bench import procstat
from bench.loadshapes import Workload
from bench.mtaflow import HELO_ONLY, Outcome, deliver
from bench.testhelpers import Endpoint, ProtocolError

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
    expect_result: bool = True  # False: a null milter, no SPF result expected


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
        if not spec.expect_result:
            expected = ""  # a null milter: "no result expected", and none given
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
