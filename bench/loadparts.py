"""The parts of the load matrix that drive the milters (see loadmatrix.py).

Each part takes the running Bench (DNS server, milters, options) and
returns its rows; loadreport.py turns them into tables.
"""

from __future__ import annotations

import asyncio
from typing import Final

from bench import loadreport
from bench.loadbench import Bench
from bench.loadclient import LoadResult, run_load
from bench.milters import Milter, start_incumbent, start_ours

SLOW_DNS: Final = 0.020  # seconds per answer in the "20 ms" runs
ATTACK_DELAY: Final = 30.0
ATTACK_TIME_LIMIT: Final = 3.0
ATTACK_NAME: Final = "slow.fresh.load.example"


def run_matrix(bench: Bench) -> list[dict[str, object]]:
    """Every shape x DNS x concurrency cell, for both milters."""
    ours, theirs = bench.pair("unix")
    options = bench.options
    cells: list[dict[str, object]] = []
    for dns_mode in options.dns:
        bench.dns.set_delay(SLOW_DNS if dns_mode == "20ms" else 0.0)
        for shape in options.shapes:
            for concurrency in options.concurrency:
                first_ours = len(cells) % 2 == 0  # alternate who goes first
                order = (ours, theirs) if first_ours else (theirs, ours)
                measured = {
                    m.name: bench.measure(m, shape, concurrency, options.seconds)
                    for m in order
                }
                cell = {"shape": shape, "dns": dns_mode, "concurrency": concurrency}
                cell.update(ours=measured["ours"], theirs=measured["pyspf-milter"])
                print(loadreport.cell_line(cell), flush=True)
                cells.append(cell)
    bench.dns.set_delay(0.0)
    return cells


def run_cold(bench: Bench) -> list[dict[str, object]]:
    """Concurrency 1, 20 ms per query, new names for every message."""
    ours, theirs = bench.pair("unix")
    bench.dns.set_delay(SLOW_DNS)
    rtt = bench.dns_rtt()
    rows = []
    for workload in ("mx-cold", "include-cold", "providers-cold"):
        row: dict[str, object] = {"workload": workload, "rtt": rtt}
        for milter in (ours, theirs):
            before = bench.dns_queries()
            result = bench.measure(
                milter,
                workload,
                1,
                seconds=60.0,
                max_messages=bench.options.cold_messages,
                warmup=0.0,
            )
            side = "ours" if milter is ours else "theirs"
            row[side] = result
            row[f"{side}_queries"] = (bench.dns_queries() - before) / result.messages
        print(loadreport.cold_line(row), flush=True)
        rows.append(row)
    bench.dns.set_delay(0.0)
    return rows


def run_sockets(bench: Bench) -> list[dict[str, object]]:
    """Unix against inet sockets at concurrency 1, warm, for both milters."""
    rows: list[dict[str, object]] = []
    seconds = max(bench.options.seconds / 2, 2.0)
    for kind in ("unix", "inet"):
        ours, theirs = bench.pair(kind)
        for milter in (ours, theirs):
            result = bench.measure(milter, "include", 1, seconds)
            rows.append({"milter": milter.name, "socket": kind, "result": result})
            print(loadreport.socket_line(rows[-1]), flush=True)
    return rows


def run_attack(bench: Bench) -> list[dict[str, object]]:
    """Checks of other domains while one domain's DNS answers after 30 s."""
    work = bench.work / "attack"
    bench.dns.command(f"slow {ATTACK_NAME} {ATTACK_DELAY}")
    seconds = bench.options.attack_seconds
    rows: list[dict[str, object]] = []
    for name in ("ours", "pyspf-milter"):
        if name == "ours":
            source = bench.options.source
            milter = start_ours(work, time_limit=ATTACK_TIME_LIMIT, source=source)
        else:
            milter = start_incumbent(work, time_limit=ATTACK_TIME_LIMIT)
        try:
            baseline = bench.measure(milter, "include", 10, seconds)
            normal, slow = asyncio.run(_under_attack(bench, milter, seconds))
        finally:
            milter.stop()
        row = {"milter": milter.name, "baseline": baseline}
        row.update(normal=normal, slow=slow)
        print(loadreport.attack_line(row), flush=True)
        rows.append(row)
    bench.dns.command(f"slow {ATTACK_NAME} 0")
    return rows


async def _under_attack(
    bench: Bench, milter: Milter, seconds: float
) -> tuple[LoadResult, LoadResult]:
    """Run the normal load and the slow domain's load at the same time."""
    normal, slow = await asyncio.gather(
        run_load(bench.spec(milter, "include", 10, seconds, dns_cpu=False)),
        run_load(bench.spec(milter, "slow-cold", 20, seconds, dns_cpu=False)),
    )
    return normal, slow
