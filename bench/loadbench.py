"""The bench of the load matrix: what runs in the namespace, and its options.

Its own module so that the parts (bench/loadparts.py, bench/loade2e.py)
and the matrix that runs them (bench/loadmatrix.py) all import it, and
none of them imports another.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query

from bench import netns, nullmilters, procstat
from bench.loadclient import MAX_MESSAGES, LoadResult, LoadSpec, run_load
from bench.loaddns import FRESH_SUFFIX
from bench.milters import Milter, start_incumbent, start_ours


@dataclass(frozen=True, slots=True)
class Options:
    """What to run and for how long."""

    parts: tuple[str, ...]
    shapes: tuple[str, ...]
    dns: tuple[str, ...]
    concurrency: tuple[int, ...]
    seconds: float
    warmup: float
    cold_messages: int
    attack_seconds: float
    e2e_messages: int
    source: Path | None
    warm_shapes: tuple[str, ...]  # the contention part's shapes
    warm_concurrency: tuple[int, ...]  # the contention and floor parts'
    hog: int  # busy processes beside the milters in the contention part
    json_path: Path


@dataclass(slots=True)
class Bench:
    """What runs in the namespace: the DNS server and the milters."""

    work: Path
    dns: netns.DnsServer
    options: Options
    milters: dict[str, Milter] = field(default_factory=dict)
    runs: int = 0

    def spec(
        self,
        milter: Milter,
        workload: str,
        concurrency: int,
        seconds: float,
        *,
        max_messages: int = MAX_MESSAGES,
        warmup: float | None = None,
        dns_cpu: bool = True,
    ) -> LoadSpec:
        """Return one run's LoadSpec; each run gets fresh names of its own."""
        self.runs += 1
        return LoadSpec(
            milter.endpoint,
            workload,
            concurrency,
            seconds,
            self.options.warmup if warmup is None else warmup,
            max_messages,
            pid=milter.pid,
            generation_base=self.runs * 10_000_000,
            dns_pid=self.dns.pid if dns_cpu else None,
            expect_result=milter.adds_result,
        )

    def measure(
        self,
        milter: Milter,
        workload: str,
        concurrency: int,
        seconds: float,
        *,
        max_messages: int = MAX_MESSAGES,
        warmup: float | None = None,
    ) -> LoadResult:
        """Run one load against ``milter`` and return what it measured."""
        spec = self.spec(
            milter,
            workload,
            concurrency,
            seconds,
            max_messages=max_messages,
            warmup=warmup,
        )
        result = asyncio.run(run_load(spec))
        if milter.process.poll() is not None:
            raise RuntimeError(f"{milter.name} died:\n{milter.log_tail()}")
        return result

    def dns_rtt(self, samples: int = 7) -> float:
        """Return the median time of one query to the DNS server, in ms."""
        times = []
        for n in range(samples):
            query = dns.message.make_query(f"rtt{n}.g{self.runs}.{FRESH_SUFFIX}", "TXT")
            start = time.perf_counter()
            dns.query.udp(query, "127.0.0.1", timeout=5)
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    def dns_queries(self) -> int:
        """Return how many queries the DNS server has answered so far."""
        return int(self.dns.command("stats").split()[-1])

    def pair(self, kind: str) -> tuple[Milter, Milter]:
        """Return ours and pyspf-milter on ``kind`` sockets, starting them once."""
        if f"ours-{kind}" not in self.milters:
            self.milters[f"ours-{kind}"] = start_ours(
                self.work / "ours", kind=kind, source=self.options.source
            )
            self.milters[f"theirs-{kind}"] = start_incumbent(
                self.work / "theirs", kind=kind
            )
        return self.milters[f"ours-{kind}"], self.milters[f"theirs-{kind}"]

    def floor(self, kind: str) -> tuple[Milter, Milter]:
        """Return the C and the pymilter null milter, negotiating as ours does.

        Ours' terms are read from ours itself on the same kind of socket
        (bench/nullmilters.py), once, before the null milters start.
        """
        if f"null-c-{kind}" not in self.milters:
            ours, _ = self.pair(kind)
            terms = nullmilters.negotiation(ours.endpoint)
            print(f"ours negotiates {terms}", flush=True)
            work = self.work / "null"
            flavours = {"c": nullmilters.NULL_C, "py": nullmilters.NULL_PY}
            for key, flavour in flavours.items():
                milter = nullmilters.start(work, flavour, terms, kind)
                self.milters[f"null-{key}-{kind}"] = milter
        return self.milters[f"null-c-{kind}"], self.milters[f"null-py-{kind}"]

    def cpu_account(self) -> tuple[float, float]:
        """Return CPU seconds used by the machine and by the benchmark itself.

        The benchmark: this process, its waited-for children, and the live
        milters and DNS server. Postfix (the e2e part) is not among them.
        """
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(value) for value in fields]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / procstat.TICKS  # not idle, iowait
        own = sum(
            usage.ru_utime + usage.ru_stime
            for usage in (
                resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN),
            )
        )
        live = [m.pid for m in self.milters.values() if m.process.poll() is None]
        own += sum(procstat.cpu_seconds(pid) for pid in [*live, self.dns.pid])
        return busy, own

    def stop(self) -> None:
        for milter in self.milters.values():
            milter.stop()
        self.milters.clear()
