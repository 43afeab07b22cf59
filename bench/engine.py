"""Warm SPF evaluations per second: our check_host() against pyspf.

Run as a module from the repository root (the package is installed
editable in .venv; the zone model comes through bench/testhelpers.py)::

    .venv/bin/python -m bench.engine [--seconds S] [--rounds N] [--json]
    .venv/bin/python -m bench.engine --profile include

Both engines answer from the same zone, in this one process. Ours takes the
daemon's warm path: spf_milter.dnsclient.resolver.DnsLookup with the shared DnsCache,
warmed once from tests/helpers/dnsserver.py serving the zone on 127.0.0.1, and
one spf.Memo, as the daemon's runner holds one (records are parsed once and
kept). pyspf reads the zone through its ``spf.DNSLookup`` hook, memoised
(pyspf itself starts every query with an empty cache, by design). Rounds
alternate which engine goes first and the median rate of each is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ipaddress
import json
import math
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import spf

from bench import procstat
from bench.shapes import HELO, SHAPES, Shape, build_zone
from bench.testhelpers import DnsServer, zone_lookup
from spf_milter.dnsclient.cache import DnsCache
from spf_milter.dnsclient.resolver import DnsLookup, Nameserver
from spf_milter.spf import Lookup, Memo, check_host

BATCH = 200  # calls between two looks at the clock
MAX_BATCHES = 1_000_000  # a hard stop whatever the clock says
TARGET_RATIO = 10.0  # the goal: ten times pyspf's rate, warm

Timer = Callable[[Shape, float], float]


def time_ours(lookup: Lookup, memo: Memo, *, parse_ip: bool) -> Timer:
    """Return a timer of our engine: one event loop per timed run, one memo.

    The daemon parses the client address once per connection, not per
    check; ``parse_ip`` parses it per check anyway, as pyspf does.
    """

    async def run(shape: Shape, seconds: float) -> float:
        calls, start = 0, time.perf_counter()
        client = ipaddress.ip_address(shape.client)
        for _ in range(MAX_BATCHES):
            for _ in range(BATCH):
                ip = ipaddress.ip_address(shape.client) if parse_ip else client
                await check_host(
                    lookup, ip, shape.domain, shape.sender, helo=HELO, memo=memo
                )
            calls += BATCH
            if time.perf_counter() - start >= seconds:
                break
        return calls / (time.perf_counter() - start)

    return lambda shape, seconds: asyncio.run(run(shape, seconds))


def time_pyspf(shape: Shape, seconds: float) -> float:
    """Time pyspf's RFC 7208 interface, spf.check2(), on ``shape``."""
    calls, start = 0, time.perf_counter()
    for _ in range(MAX_BATCHES):
        for _ in range(BATCH):
            spf.check2(i=shape.client, s=shape.sender, h=HELO)
        calls += BATCH
        if time.perf_counter() - start >= seconds:
            break
    return calls / (time.perf_counter() - start)


def check_agreement(lookup: Lookup, memo: Memo) -> None:
    """Assert that both engines give each shape its expected result."""
    for shape in SHAPES:
        ip = ipaddress.ip_address(shape.client)
        ours = asyncio.run(
            check_host(lookup, ip, shape.domain, shape.sender, helo=HELO, memo=memo)
        )
        theirs, _explanation = spf.check2(i=shape.client, s=shape.sender, h=HELO)
        assert str(ours.result) == theirs == shape.result, (shape, ours, theirs)


def measure(
    timers: dict[str, Timer], seconds: float, rounds: int, warmup: float
) -> dict[str, dict[str, float]]:
    """Return the median rate per shape and engine over ``rounds`` rounds."""
    for shape in SHAPES:
        for timer in timers.values():
            timer(shape, warmup)
    rates: dict[str, dict[str, list[float]]] = {
        shape.name: {engine: [] for engine in timers} for shape in SHAPES
    }
    for round_number in range(rounds):
        order = list(timers.items())
        if round_number % 2:
            order.reverse()  # neither engine always runs on a fresh heap
        for shape in SHAPES:
            for engine, timer in order:
                rates[shape.name][engine].append(timer(shape, seconds))
    return {
        name: {engine: statistics.median(runs) for engine, runs in by_engine.items()}
        for name, by_engine in rates.items()
    }


def machine() -> dict[str, object]:
    """Describe where the figures were taken."""
    return {
        "cpu": procstat.cpu_model(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "pyspf": spf.__version__,
    }


@dataclass(frozen=True, slots=True)
class Row:
    """The medians of one shape."""

    shape: Shape
    ours: float
    pyspf: float

    @property
    def ratio(self) -> float:
        return self.ours / self.pyspf


def rows_of(medians: dict[str, dict[str, float]]) -> list[Row]:
    return [
        Row(shape, medians[shape.name]["ours"], medians[shape.name]["pyspf"])
        for shape in SHAPES
    ]


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def as_json(rows: list[Row], args: argparse.Namespace) -> str:
    shapes = [
        {
            "shape": row.shape.name,
            "description": row.shape.description,
            "result": row.shape.result,
            "ours_per_s": round(row.ours),
            "pyspf_per_s": round(row.pyspf),
            "ratio": round(row.ratio, 2),
        }
        for row in rows
    ]
    figures = {
        "machine": machine(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "shapes": shapes,
        "geomean_ratio": round(geometric_mean([row.ratio for row in rows]), 2),
    }
    return json.dumps(figures, indent=2)


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(f"median of {args.rounds} rounds of {args.seconds:g} s per shape and engine")
    print()
    print(f"| {'shape':<13}| {'result':<7}| {'ours/s':>9} | {'pyspf/s':>8} |  ratio |")
    print(f"|{'-' * 14}|{'-' * 8}|{'-' * 11}|{'-' * 10}|{'-' * 8}|")
    for row in rows:
        print(
            f"| {row.shape.name:<13}| {row.shape.result:<7}| {row.ours:>9,.0f} "
            f"| {row.pyspf:>8,.0f} | {row.ratio:>5.1f}x |"
        )
    mean = geometric_mean([row.ratio for row in rows])
    print(f"\ngeometric mean of the ratios: {mean:.1f}x (goal: {TARGET_RATIO:g}x)")


def profile(timer: Timer, shape: Shape, seconds: float, top: int) -> None:
    """Profile our engine on ``shape``; print where the time goes."""
    timer(shape, min(seconds, 0.5))  # warm: records parsed, answers memoised
    profiler = cProfile.Profile()
    profiler.enable()
    timer(shape, seconds)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="median over these")
    parser.add_argument("--warmup", type=float, default=0.3, help="per shape, once")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument(
        "--profile",
        choices=[shape.name for shape in SHAPES],
        help="profile our engine on this shape instead of comparing",
    )
    parser.add_argument("--top", type=int, default=25, help="profile rows to show")
    parser.add_argument(
        "--parse-ip",
        action="store_true",
        help="parse the client address in every check, as pyspf must",
    )
    args = parser.parse_args(argv)
    if not (0 < args.seconds <= 60 and 0 < args.rounds <= 25):
        parser.error("--seconds must be in (0, 60] and --rounds in 1..25")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    zone = build_zone()
    with DnsServer(zone) as server:
        # The answers' TTLs outlast the run: after the warm-up every query
        # is a cache hit, as for a busy daemon.
        lookup = DnsLookup([Nameserver("127.0.0.1", server.port)], cache=DnsCache())
        memo = Memo()
        ours = time_ours(lookup, memo, parse_ip=args.parse_ip)
        if args.profile:
            shape = next(s for s in SHAPES if s.name == args.profile)
            profile(ours, shape, args.seconds, args.top)
            return 0
        saved = spf.DNSLookup
        spf.DNSLookup = zone_lookup(zone)  # pyspf's test seam; this process only
        try:
            check_agreement(lookup, memo)
            timers = {"ours": ours, "pyspf": time_pyspf}
            medians = measure(timers, args.seconds, args.rounds, args.warmup)
        finally:
            spf.DNSLookup = saved
    rows = rows_of(medians)
    if args.json:
        print(as_json(rows, args))
    else:
        print_table(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
