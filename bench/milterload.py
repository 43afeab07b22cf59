"""Load a milter with concurrent Postfix-like sessions and measure it.

One run::

    .venv/bin/python -m bench.milterload --milter unix:/run/x.sock --pid PID \\
        --workload mixed --concurrency 50 --seconds 10 [--json]

The whole matrix, ours against Debian's pyspf-milter, in a private network
namespace with its own DNS server (see bench/README.md, "Milter under load")::

    .venv/bin/python -m bench.milterload --matrix [--quick]

The load itself is bench/loadclient.py. With ``--pid``, the milter's CPU
time over the window comes from /proc/PID/stat, and its memory and threads
at the end from /proc/PID/status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from bench.loadclient import (
    MAX_MESSAGES,
    MESSAGE_TIMEOUT,
    LoadResult,
    LoadSpec,
    run_load,
)
from bench.loadshapes import WORKLOADS
from bench.testhelpers import Endpoint


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
        from bench import loadmatrix  # only the matrix needs it

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
