"""The milter load matrix: ours against pyspf-milter, in one run.

    .venv/bin/python bench/milterload.py --matrix [--quick] [--parts ...]

Parts (bench/loadparts.py; all by default, ``--parts
matrix,cold`` picks some):

- ``matrix``: shapes {include, mx, mixed} x DNS {warm, 20 ms per query} x
  concurrency {1, 10, 50, 200}, both milters, alternating which goes first;
- ``cold``: concurrency 1, 20 ms per query, a new set of names for every
  message (mx with 5 hosts, and the include chain);
- ``socket``: unix against inet sockets at concurrency 1, warm;
- ``attack``: one domain's DNS answers after 30 s while other domains are
  checked; both milters restarted with a 3 s check time limit;
- ``e2e``: through a private Postfix with smtp-source (bench/loade2e.py).

Everything runs in a private network namespace (bench/netns.py); the
script re-executes itself there with unshare. Results go to stdout as
Markdown tables (bench/loadreport.py) and to a JSON file.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import dns.message
import dns.query

import loadparts
import loadreport
import netns
import procstat
from loaddns import FRESH_SUFFIX
from milterload import MAX_MESSAGES, LoadResult, LoadSpec, run_load
from milters import Milter, start_incumbent, start_ours

PARTS: Final = ("matrix", "cold", "socket", "attack", "e2e")
DEFAULT_PARTS: Final = PARTS


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


def run_parts(bench: Bench) -> dict[str, object]:
    """Run the chosen parts in order; return their results by name."""
    results: dict[str, object] = {}
    runners = {
        "matrix": loadparts.run_matrix,
        "cold": loadparts.run_cold,
        "socket": loadparts.run_sockets,
        "attack": loadparts.run_attack,
    }
    others: dict[str, float] = {}
    for part in bench.options.parts:
        started = time.monotonic()
        busy, own = bench.cpu_account()
        if part == "e2e":
            import loade2e  # Postfix's helpers load only when asked for

            results[part] = loade2e.run(bench)
        else:
            results[part] = runners[part](bench)
        elapsed = time.monotonic() - started
        busy_now, own_now = bench.cpu_account()
        # Other work's share of the machine while the part ran (in e2e the
        # private Postfix counts as other work).
        share = (busy_now - busy - (own_now - own)) / (elapsed * (os.cpu_count() or 1))
        others[part] = max(share, 0.0)
        print(f"-- {part}: {elapsed:.0f} s, other work {share:.0%}", flush=True)
    results["other_work"] = others
    return results


def machine() -> dict[str, object]:
    """Describe where and when the figures were taken."""
    return {
        "cpu": procstat.cpu_model(),
        "nproc": os.cpu_count(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


@contextmanager
def namespace_bench(options: Options) -> Iterator[Bench]:
    """Prepare the namespace, start the DNS server; clean up after."""
    work = Path(tempfile.mkdtemp(prefix="spf-milter-load-", dir="/tmp"))
    try:
        work.chmod(0o755)
        netns.prepare(work)
        dns = netns.DnsServer(work / "dns.log")
        bench = Bench(work, dns, options)
        try:
            yield bench
        finally:
            bench.stop()
            dns.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="milterload.py --matrix")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS))
    parser.add_argument("--shapes", default="include,mx,mixed")
    parser.add_argument("--dns", default="warm,20ms")
    parser.add_argument("--concurrency", default="1,10,50,200")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--cold-messages", type=int, default=30)
    parser.add_argument("--attack-seconds", type=float, default=8.0)
    parser.add_argument("--e2e-messages", type=int, default=3000)
    parser.add_argument("--ours-source", type=Path, help="a checkout to run ours from")
    parser.add_argument("--json", type=Path, help="where to write all figures")
    args = parser.parse_args(argv)
    quick = args.quick
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Options(
        parts=tuple(args.parts.split(",")),
        shapes=tuple(args.shapes.split(",")),
        dns=tuple(args.dns.split(",")),
        concurrency=(1, 50) if quick else tuple(map(int, args.concurrency.split(","))),
        seconds=2.0 if quick else args.seconds,
        warmup=0.5 if quick else args.warmup,
        cold_messages=8 if quick else args.cold_messages,
        attack_seconds=4.0 if quick else args.attack_seconds,
        e2e_messages=500 if quick else args.e2e_messages,
        source=args.ours_source.resolve() if args.ours_source else None,
        json_path=args.json or Path(f"/tmp/spf-milter-load-{stamp}.json"),
    )


def main(argv: list[str]) -> int:
    """Run the matrix in a private namespace; print and save the figures."""
    options = _parse(argv)
    unknown = set(options.parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts: {sorted(unknown)} (choose from {PARTS})")
    if not netns.inside():
        netns.reexec(
            [str(Path(__file__).with_name("milterload.py")), "--matrix", *argv]
        )
    about = machine()
    print(loadreport.header(about), flush=True)
    with namespace_bench(options) as bench:
        results = run_parts(bench)
    about["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    print(loadreport.tables(results, about))
    options.json_path.write_text(json.dumps(_jsonable(results | {"machine": about})))
    print(f"figures saved to {options.json_path}")
    return 0


def _jsonable(value: object) -> object:
    if isinstance(value, LoadResult):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
