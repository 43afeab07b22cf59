"""The milter load matrix: ours against pyspf-milter, in one run.

    .venv/bin/python -m bench.milterload --matrix [--quick] [--parts ...]

Parts (bench/loadparts.py; all by default, ``--parts
matrix,cold`` picks some):

- ``matrix``: shapes {include, mx, mixed} x DNS {warm, 20 ms per query} x
  concurrency {1, 10, 50, 200}, both milters, alternating which goes first;
- ``cold``: concurrency 1, 20 ms per query, a new set of names for every
  message (mx with 5 hosts, and the include chain);
- ``socket``: unix against inet sockets at concurrency 1, warm;
- ``attack``: one domain's DNS answers after 30 s while other domains are
  checked; both milters restarted with a 3 s check time limit;
- ``contention``: warm include and mx at concurrency 1, 10, 50, both
  milters, alone and beside ``--hog N`` busy processes, with the machine's
  other load during each run (bench/loadcontention.py);
- ``floor``: warm include at concurrency 1, 10, 50: ours beside a C
  libmilter and a pymilter milter that do nothing and negotiate as ours
  does (bench/loadfloor.py, bench/nullmilters.py);
- ``e2e``: through a private Postfix with smtp-source, also with the C
  null milter (bench/loade2e.py).

``--shapes`` and ``--concurrency`` given on the command line also choose
the contention part's shapes and both its and the floor part's
concurrency; otherwise those parts take the defaults above.

Everything runs in a private network namespace (bench/netns.py); the
script re-executes itself there with unshare. Results go to stdout as
Markdown tables (bench/loadreport.py) and to a JSON file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from bench import (
    loadcontention,
    loade2e,
    loadfloor,
    loadparts,
    loadreport,
    netns,
    procstat,
)
from bench.loadbench import Bench, Options
from bench.loadclient import LoadResult

PARTS: Final = ("matrix", "cold", "socket", "attack", "contention", "floor", "e2e")
DEFAULT_PARTS: Final = PARTS
MATRIX_SHAPES: Final = ("include", "mx", "mixed")
MATRIX_CONCURRENCY: Final = (1, 10, 50, 200)
WARM_SHAPES: Final = ("include", "mx")  # the contention part's default
WARM_CONCURRENCY: Final = (1, 10, 50)  # the contention and floor parts'


def run_parts(bench: Bench) -> dict[str, object]:
    """Run the chosen parts in order; return their results by name."""
    results: dict[str, object] = {}
    runners = {
        "matrix": loadparts.run_matrix,
        "cold": loadparts.run_cold,
        "socket": loadparts.run_sockets,
        "attack": loadparts.run_attack,
        "contention": loadcontention.run_contention,
        "floor": loadfloor.run_floor,
    }
    others: dict[str, float] = {}
    for part in bench.options.parts:
        started = time.monotonic()
        busy, own = bench.cpu_account()
        if part == "e2e":
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
    parser = argparse.ArgumentParser(prog="python -m bench.milterload --matrix")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS))
    parser.add_argument(
        "--shapes", help="default include,mx,mixed (contention: include,mx)"
    )
    parser.add_argument("--dns", default="warm,20ms")
    parser.add_argument(
        "--concurrency", help="default 1,10,50,200 (contention, floor: 1,10,50)"
    )
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--cold-messages", type=int, default=30)
    parser.add_argument("--attack-seconds", type=float, default=8.0)
    parser.add_argument("--e2e-messages", type=int, default=3000)
    parser.add_argument("--hog", type=int, default=1, help="busy processes")
    parser.add_argument("--ours-source", type=Path, help="a checkout to run ours from")
    parser.add_argument("--json", type=Path, help="where to write all figures")
    args = parser.parse_args(argv)
    quick = args.quick
    stamp = time.strftime("%Y%m%d-%H%M%S")
    shapes = tuple(args.shapes.split(",")) if args.shapes else None
    given = tuple(map(int, args.concurrency.split(","))) if args.concurrency else None
    return Options(
        parts=tuple(args.parts.split(",")),
        shapes=shapes or MATRIX_SHAPES,
        dns=tuple(args.dns.split(",")),
        concurrency=(1, 50) if quick else given or MATRIX_CONCURRENCY,
        seconds=2.0 if quick else args.seconds,
        warmup=0.5 if quick else args.warmup,
        cold_messages=8 if quick else args.cold_messages,
        attack_seconds=4.0 if quick else args.attack_seconds,
        e2e_messages=500 if quick else args.e2e_messages,
        source=args.ours_source.resolve() if args.ours_source else None,
        warm_shapes=shapes or WARM_SHAPES,
        warm_concurrency=(1, 50) if quick else given or WARM_CONCURRENCY,
        hog=args.hog,
        json_path=args.json or Path(f"/tmp/spf-milter-load-{stamp}.json"),
    )


def main(argv: list[str]) -> int:
    """Run the matrix in a private namespace; print and save the figures."""
    options = _parse(argv)
    unknown = set(options.parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts: {sorted(unknown)} (choose from {PARTS})")
    if options.hog < 1:
        raise SystemExit("--hog: at least one busy process")
    if not netns.inside():
        netns.reexec(["-m", "bench.milterload", "--matrix", *argv])
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
