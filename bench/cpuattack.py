"""Other domains' latency while a zone makes each check parse thousands of records.

The attack of issue 11: a record ``v=spf1 mx -all`` whose 10 MX hosts each
have 2,500 A records (as many as one uncompressed TCP answer holds), asked
for on every message without the cache's help (a real attacker uses fresh
names or TTL 0). Before the work bound, each such check cost the one event
loop thread 0.7 to 1.8 s of CPU, and every other check waited behind it.

Run from the repository root::

    .venv/bin/python -m bench.cpuattack [--seconds 8] [--rate 4] [--rounds 3]
    .venv/bin/python -m bench.cpuattack --source /path/to/other/checkout

The checks run as in the daemon: one ``spf_milter.eventloop.EventLoop``
thread, our ``DnsLookup``, callers in threads of their own. Two phases of
``--seconds`` each, ``--rounds`` times (the table shows medians):
*alone*, 10 threads check other domains one after
another (each message a fresh generation of the 3-level include chain of
bench/zones/load.zone, so it needs the DNS, through the shared cache);
*under attack*, the same while ``--rate`` attack checks a second are
started (through a Lookup without a cache, so each one fetches and reads
all ten answers). The DNS server is ``bench/loaddns.py`` in a process of its
own; it replays the attack's answers from memory, so its own work does not
slow the others' answers. Every loop is bounded by time and by count.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
BENCH: Final = ROOT / "bench"
ATTACK_DOMAIN: Final = "b.x"  # short names: 2,500 records fit one TCP answer
HOSTS: Final = 10
ADDRESSES: Final = 2_500
OTHERS: Final = 10  # threads checking other domains
OTHER_DOMAIN: Final = "chain.fresh.load.example"
OTHER_CLIENT: Final = "192.0.15.7"  # in the chain's deepest level: pass
ATTACK_CLIENT: Final = "192.0.2.1"
MAX_MESSAGES: Final = 100_000  # per phase and thread: a bound besides time


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    messages: int
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    results: dict[str, int]
    attack_checks: int
    attack_results: dict[str, int]
    cpu_per_second: float  # CPU seconds of this process per second of the phase


def _zone_text() -> str:
    lines = [(BENCH / "zones" / "load.zone").read_text(encoding="utf-8")]
    lines += ["$TTL 300", f"$ORIGIN {ATTACK_DOMAIN}.", '@ TXT "v=spf1 mx -all"']
    for host in range(HOSTS):
        lines.append(f"@ MX {host} m{host}")
        for n in range(ADDRESSES):
            address = ipaddress.IPv4Address((10 << 24) + (host << 16) + n)
            lines.append(f"m{host} A {address}")
    return "\n".join(lines) + "\n"


def _start_dns(work: Path) -> tuple[subprocess.Popen[str], int]:
    zone = work / "attack.zone"
    zone.write_text(_zone_text(), encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.loaddns", "--zone", str(zone), "--port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "ok listening 127.0.0.1:PORT"
    if not line.startswith("ok listening"):
        process.kill()
        raise RuntimeError(f"the DNS server did not start: {line!r}")
    return process, int(line.rpartition(":")[2])


class Bench:
    """The event loop, the two Lookups, and the message counters."""

    def __init__(self, port: int) -> None:
        from spf_milter.dnsclient.cache import DnsCache
        from spf_milter.dnsclient.resolver import DnsLookup, Nameserver
        from spf_milter.eventloop import EventLoop
        from spf_milter.runner import Prefetcher
        from spf_milter.spf import Limits, Memo

        server = [Nameserver("127.0.0.1", port)]
        self.cached = DnsLookup(server, timeout=5.0, cache=DnsCache())
        self.uncached = DnsLookup(server, timeout=5.0)
        self.limits = Limits(time_limit=20.0)
        self.prefetcher = Prefetcher()  # as the daemon's checks prefetch
        self.memo = Memo()  # and share one memo of parsed records
        self.loop = EventLoop()
        self.loop.start()
        self.generation = iter(range(1, 10**9))
        self.lock = threading.Lock()

    def check(self, domain: str, client: str, cached: bool) -> Any:
        from spf_milter.spf import check_host

        lookup = self.cached if cached else self.uncached
        ip = ipaddress.ip_address(client)
        return self.loop.submit(
            check_host(
                lookup,
                ip,
                domain,
                f"user@{domain}",
                limits=self.limits,
                prefetch=self.prefetcher,
                memo=self.memo,
            )
        )

    def fresh_other(self) -> str:
        with self.lock:
            generation = next(self.generation)
        head = OTHER_DOMAIN.removesuffix(".fresh.load.example")
        return f"{head}.g{generation}.fresh.load.example"


def _others(
    bench: Bench, deadline: float, latencies: list[float], results: Counter[str]
) -> None:
    for _ in range(MAX_MESSAGES):
        if time.monotonic() >= deadline:
            return
        started = time.monotonic()
        checked = bench.check(bench.fresh_other(), OTHER_CLIENT, cached=True).result(60)
        latencies.append(time.monotonic() - started)
        results[str(checked.result)] += 1


def _attack(
    bench: Bench, deadline: float, rate: float
) -> list[concurrent.futures.Future[Any]]:
    started: list[concurrent.futures.Future[Any]] = []
    next_at = time.monotonic()
    for _ in range(MAX_MESSAGES):
        if next_at >= deadline:
            break
        time.sleep(max(0.0, next_at - time.monotonic()))
        started.append(bench.check(ATTACK_DOMAIN, ATTACK_CLIENT, cached=False))
        next_at += 1.0 / rate
    return started


def run_phase(bench: Bench, name: str, seconds: float, rate: float) -> Phase:
    """Run the others for ``seconds``, and the attack at ``rate`` if it is above 0."""
    latencies: list[float] = []
    results: Counter[str] = Counter()
    cpu_before, started = time.process_time(), time.monotonic()
    deadline = started + seconds
    threads = [
        threading.Thread(target=_others, args=(bench, deadline, latencies, results))
        for _ in range(OTHERS)
    ]
    for thread in threads:
        thread.start()
    attacks = _attack(bench, deadline, rate) if rate > 0 else []
    for thread in threads:
        thread.join(120)
    attack_results = Counter(str(f.result(120).result) for f in attacks)
    elapsed = time.monotonic() - started
    ordered = sorted(latencies) or [0.0]
    return Phase(
        name=name,
        messages=len(latencies),
        rate=len(latencies) / seconds,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        max_ms=ordered[-1] * 1000,
        results=dict(results),
        attack_checks=len(attacks),
        attack_results=dict(attack_results),
        cpu_per_second=(time.process_time() - cpu_before) / elapsed,
    )


def median_phase(phases: list[Phase]) -> Phase:
    """Return the medians of the rates and latencies, the sums of the counts."""
    results: Counter[str] = Counter()
    attack_results: Counter[str] = Counter()
    for phase in phases:
        results.update(phase.results)
        attack_results.update(phase.attack_results)
    return Phase(
        name=phases[0].name,
        messages=sum(phase.messages for phase in phases),
        rate=statistics.median(phase.rate for phase in phases),
        p50_ms=statistics.median(phase.p50_ms for phase in phases),
        p99_ms=statistics.median(phase.p99_ms for phase in phases),
        max_ms=max(phase.max_ms for phase in phases),
        results=dict(results),
        attack_checks=sum(phase.attack_checks for phase in phases),
        attack_results=dict(attack_results),
        cpu_per_second=statistics.median(phase.cpu_per_second for phase in phases),
    )


def table(alone: Phase, attacked: Phase) -> str:
    """Return the Markdown table of both phases and their ratios."""
    lines = [
        "| phase | others: msg/s | p50 ms | p99 ms | max ms | others: results "
        "| attack checks: results | CPU s/s |",
        "|---|--:|--:|--:|--:|---|---|--:|",
    ]
    for phase in (alone, attacked):
        lines.append(
            f"| {phase.name} | {phase.rate:,.0f} | {phase.p50_ms:.1f} "
            f"| {phase.p99_ms:.1f} | {phase.max_ms:.0f} | {phase.results} "
            f"| {phase.attack_checks}: {phase.attack_results or '-'} "
            f"| {phase.cpu_per_second:.2f} |"
        )
    lines.append(
        f"| under attack / alone | {attacked.rate / alone.rate:.2f}x "
        f"| {attacked.p50_ms / alone.p50_ms:.2f}x "
        f"| {attacked.p99_ms / alone.p99_ms:.2f}x | | | | |"
    )
    return "\n".join(lines)


def _use_source(milter: Path, argv: list[str]) -> None:
    """Make sure the engine under test is the one in ``milter``.

    Run again with ``milter`` first on PYTHONPATH, as bench/milters.py
    starts another checkout's daemon, unless that is already the case.
    """
    spec = importlib.util.find_spec("spf_milter")
    if spec and spec.origin and Path(spec.origin).resolve().is_relative_to(milter):
        return
    paths = [str(milter), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    command = [sys.executable, "-m", "bench.cpuattack", *argv]
    os.execve(sys.executable, command, env)  # noqa: S606 - a fixed argv, no shell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=4.0, help="attack checks/s")
    parser.add_argument("--rounds", type=int, default=3, help="alone, attacked, ...")
    parser.add_argument("--source", type=Path, help="a checkout whose milter/ to test")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.source is not None:
        _use_source(
            args.source.resolve() / "milter", sys.argv[1:] if argv is None else argv
        )
    import spf_milter

    with tempfile.TemporaryDirectory(prefix="cpuattack-") as work:
        dns, port = _start_dns(Path(work))
        try:
            bench = Bench(port)
            bench.check(ATTACK_DOMAIN, ATTACK_CLIENT, cached=False).result(120)  # warm
            rounds = [
                (
                    run_phase(bench, "alone", args.seconds, 0.0),
                    run_phase(bench, "under attack", args.seconds, args.rate),
                )
                for _ in range(args.rounds)
            ]
            bench.loop.stop()
        finally:
            assert dns.stdin is not None
            dns.stdin.write("quit\n")
            dns.stdin.close()
            dns.wait(10)
    print(f"engine: {Path(spf_milter.__file__).parent}, CPUs: {os.cpu_count()}")
    print(f"attack: {HOSTS} MX hosts x {ADDRESSES} A records, {args.rate:g} checks/s")
    alone = median_phase([phase for phase, _ in rounds])
    attacked = median_phase([phase for _, phase in rounds])
    if args.json:
        print(json.dumps([[asdict(a), asdict(b)] for a, b in rounds]))
    print(f"medians of {args.rounds} rounds of {args.seconds:g} s per phase")
    print(table(alone, attacked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
