"""The floor part: ours beside two milters that do nothing, same negotiation.

On the warm include shape (unix socket), ours runs beside the pymilter
null milter and the C libmilter null milter (bench/nullmilters.py), which
negotiate exactly ours' steps, actions and macro lists: the MTA sends all
three the same packets and waits for the same replies. The C one is the
floor of any milter; the pymilter one, the floor of one on pymilter.
Which of the three goes first rotates from one concurrency to the next.
"""

from __future__ import annotations

from bench import loadreport
from bench.loadbench import Bench
from bench.loadcontention import measure_shared


def run_floor(bench: Bench) -> list[dict[str, object]]:
    """Ours, the pymilter null and the C null milter: include, warm."""
    bench.dns.set_delay(0.0)
    ours, _ = bench.pair("unix")
    null_c, null_py = bench.floor("unix")
    milters = [("ours", ours), ("null_py", null_py), ("null_c", null_c)]
    rows: list[dict[str, object]] = []
    for turn, concurrency in enumerate(bench.options.warm_concurrency):
        shift = turn % len(milters)
        row: dict[str, object] = {"shape": "include", "concurrency": concurrency}
        for side, milter in milters[shift:] + milters[:shift]:
            result, sharing = measure_shared(bench, milter, "include", concurrency)
            row[side], row[f"{side}_sharing"] = result, sharing
        print(loadreport.floor_line(row), flush=True)
        rows.append(row)
    return rows
