"""Markdown tables and progress lines for the load matrix (loadmatrix.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from bench.loadclient import LoadResult

E2E_NULL: Final = "C null milter"  # the e2e row of bench/nullmilter.c

# DNS round trips on the critical path of a cold check, one per level of the
# record's dependency chain (RFC 7208 evaluation order).
CHAIN_LEVELS: Final = {
    "mx-cold": ("TXT -> MX -> A of the 5 hosts", 3),
    "include-cold": ("TXT -> TXT -> TXT", 3),
    "providers-cold": ("TXT -> the 4 includes' TXT", 2),
}

Row = Mapping[str, Any]
FLOOR_SIDES: Final = (
    ("ours", "ours"),
    ("null_py", "pymilter null"),
    ("null_c", "C null"),
)


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.1f}x" if theirs > 0 else "-"


def _faults(result: LoadResult) -> str:
    faults = result.errors + result.timeouts
    unexpected = sum(result.unexpected.values())
    return f"{faults}/{unexpected}"


def header(about: Mapping[str, object]) -> str:
    """Return the line saying where the run happens."""
    return (
        f"machine: {about['cpu']}, {about['nproc']} CPUs, Python "
        f"{about['python']}, kernel {about['kernel']}, load average "
        f"{' '.join(map(str, about['loadavg_start']))}"  # type: ignore[call-overload]
    )


def cell_line(cell: Row) -> str:
    """Return the progress line of one matrix cell."""
    ours, theirs = cell["ours"], cell["theirs"]
    return (
        f"{cell['shape']:8} {cell['dns']:5} c={cell['concurrency']:<3} "
        f"ours {ours.rate:7,.0f}/s p50 {ours.p50:6.1f} ms | pyspf-milter "
        f"{theirs.rate:7,.0f}/s p50 {theirs.p50:6.1f} ms | "
        f"{_ratio(ours.rate, theirs.rate)}"
    )


def cold_line(row: Row) -> str:
    """Return the progress line of one cold-cache workload."""
    ours, theirs = row["ours"], row["theirs"]
    return (
        f"{row['workload']:13} ours p50 {ours.p50:6.1f} ms | pyspf-milter p50 "
        f"{theirs.p50:6.1f} ms | {ours.p50 / max(theirs.p50, 1e-9):.2f}x"
    )


def socket_line(row: Row) -> str:
    """Return the progress line of one socket-kind run."""
    result = row["result"]
    return (
        f"{row['milter']:12} {row['socket']:4} p50 {result.p50:5.2f} ms "
        f"p99 {result.p99:5.2f} ms {result.rate:6,.0f}/s"
    )


def attack_line(row: Row) -> str:
    """Return the progress line of one slow-DNS attack run."""
    base, normal, slow = row["baseline"], row["normal"], row["slow"]
    return (
        f"{row['milter']:12} others p50 {base.p50:.1f} -> {normal.p50:.1f} ms, "
        f"p99 {base.p99:.1f} -> {normal.p99:.1f} ms; slow domain "
        f"{dict(slow.spf)} in p50 {slow.p50 / 1000:.2f} s, max {slow.max / 1000:.2f} s"
    )


def _shared(result: LoadResult, sharing: Any) -> str:
    """Return msg/s with the machine's other load during the run beside it."""
    return f"{result.rate:,.0f} ({sharing.other:.0%})"


def contention_line(cell: Row) -> str:
    """Return the progress line of one contention cell."""
    ours, theirs = cell["ours"], cell["theirs"]
    return (
        f"{cell['shape']:8} c={cell['concurrency']:<3} hog {cell['hog']} | ours "
        f"{_shared(ours, cell['ours_sharing'])}/s {ours.milter_cpu_ms:.2f} ms | "
        f"pyspf-milter {_shared(theirs, cell['theirs_sharing'])}/s "
        f"{theirs.milter_cpu_ms:.2f} ms | {_ratio(ours.rate, theirs.rate)}; hog "
        f"{cell['ours_sharing'].hog:.0%} / {cell['theirs_sharing'].hog:.0%}"
    )


def floor_line(row: Row) -> str:
    """Return the progress line of one floor row."""
    parts = [f"include  c={row['concurrency']:<3}"]
    for side, name in FLOOR_SIDES:
        result = row[side]
        parts.append(
            f"{name} {_shared(result, row[f'{side}_sharing'])}/s "
            f"{result.milter_cpu_ms:.2f} ms"
        )
    return " | ".join(parts)


def matrix_table(cells: Sequence[Row]) -> str:
    """Throughput, latency and CPU per cell, both milters, and the ratio."""
    lines = [
        "| shape | DNS | conc. | ours msg/s | pyspf-milter msg/s | ratio "
        "| ours p50 / p95 / p99 ms | pyspf-milter p50 / p95 / p99 ms "
        "| ours CPU ms/msg | pyspf-milter CPU ms/msg | DNS server CPU ms/msg "
        "ours / pyspf-milter | errors+timeouts / wrong results ours, pyspf-milter |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for cell in cells:
        ours, theirs = cell["ours"], cell["theirs"]
        lines.append(
            f"| {cell['shape']} | {cell['dns']} | {cell['concurrency']} "
            f"| {ours.rate:,.0f} | {theirs.rate:,.0f} "
            f"| {_ratio(ours.rate, theirs.rate)} "
            f"| {ours.p50:.1f} / {ours.p95:.1f} / {ours.p99:.1f} "
            f"| {theirs.p50:.1f} / {theirs.p95:.1f} / {theirs.p99:.1f} "
            f"| {ours.milter_cpu_ms:.2f} | {theirs.milter_cpu_ms:.2f} "
            f"| {ours.dns_cpu_ms:.2f} / {theirs.dns_cpu_ms:.2f} "
            f"| {_faults(ours)}, {_faults(theirs)} |"
        )
    return "\n".join(lines)


def cold_table(rows: Sequence[Row]) -> str:
    """Cold-cache latency at concurrency 1 with 20 ms per DNS answer."""
    lines = [
        "| shape | critical path | floor: levels x measured round trip "
        "| ours p50 / mean / max ms "
        "| pyspf-milter p50 / mean / max ms | ours / pyspf-milter (p50) "
        "| DNS queries per message ours, pyspf-milter "
        "| messages | results ours, pyspf-milter |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        ours, theirs = row["ours"], row["theirs"]
        path, levels = CHAIN_LEVELS[row["workload"]]
        lines.append(
            f"| {row['workload']} | {path} "
            f"| {levels} x {row['rtt']:.1f} = {levels * row['rtt']:.0f} ms "
            f"| {ours.p50:.1f} / {ours.mean:.1f} / {ours.max:.1f} "
            f"| {theirs.p50:.1f} / {theirs.mean:.1f} / {theirs.max:.1f} "
            f"| {ours.p50 / max(theirs.p50, 1e-9):.2f}x "
            f"| {row['ours_queries']:.1f}, {row['theirs_queries']:.1f} "
            f"| {ours.messages}, {theirs.messages} "
            f"| {dict(ours.spf)}, {dict(theirs.spf)} |"
        )
    return "\n".join(lines)


def socket_table(rows: Sequence[Row]) -> str:
    """Unix against inet sockets at concurrency 1."""
    lines = [
        "| milter | socket | p50 ms | p95 ms | p99 ms | msg/s |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for row in rows:
        result = row["result"]
        lines.append(
            f"| {row['milter']} | {row['socket']} | {result.p50:.2f} "
            f"| {result.p95:.2f} | {result.p99:.2f} | {result.rate:,.0f} |"
        )
    return "\n".join(lines)


def concurrency_table(cells: Sequence[Row], concurrency: int = 200) -> str:
    """Errors, timeouts and memory of the cells at the highest concurrency."""
    lines = [
        "| shape | DNS | milter | messages | errors | timeouts "
        "| RSS MiB end / peak | threads at end |",
        "|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for cell in cells:
        if cell["concurrency"] != concurrency:
            continue
        for name, result in (("ours", cell["ours"]), ("pyspf-milter", cell["theirs"])):
            lines.append(
                f"| {cell['shape']} | {cell['dns']} | {name} | {result.messages} "
                f"| {result.errors} | {result.timeouts} "
                f"| {result.rss_mb:.1f} / {result.peak_rss_mb:.1f} "
                f"| {result.threads} |"
            )
    return "\n".join(lines)


def attack_table(rows: Sequence[Row]) -> str:
    """Other domains' latency while one domain's DNS answers after 30 s."""
    lines = [
        "| milter | others alone: msg/s, p50 / p99 ms "
        "| others under attack: msg/s, p50 / p99 ms "
        "| slow domain: messages, results | slow domain: p50 / max s |",
        "|---|--:|--:|---|--:|",
    ]
    for row in rows:
        base, normal, slow = row["baseline"], row["normal"], row["slow"]
        lines.append(
            f"| {row['milter']} | {base.rate:,.0f}, {base.p50:.1f} / {base.p99:.1f} "
            f"| {normal.rate:,.0f}, {normal.p50:.1f} / {normal.p99:.1f} "
            f"| {slow.messages}, {dict(slow.spf)} "
            f"| {slow.p50 / 1000:.2f} / {slow.max / 1000:.2f} |"
        )
    return "\n".join(lines)


def contention_table(cells: Sequence[Row]) -> str:
    """Both milters alone and beside the CPU hog; other load beside each run."""
    lines = [
        "| shape | conc. | hog processes | ours msg/s (other load) "
        "| pyspf-milter msg/s (other load) | ratio ours / pyspf-milter "
        "| ours CPU ms/msg | pyspf-milter CPU ms/msg | CPU ratio ours / pyspf-milter "
        "| hog's share: ours run / pyspf-milter run "
        "| errors+timeouts / wrong results ours, pyspf-milter |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for cell in cells:
        ours, theirs = cell["ours"], cell["theirs"]
        mine, their = cell["ours_sharing"], cell["theirs_sharing"]
        cpu_ratio = ours.milter_cpu_ms / max(theirs.milter_cpu_ms, 1e-9)
        lines.append(
            f"| {cell['shape']} | {cell['concurrency']} | {cell['hog']} "
            f"| {_shared(ours, mine)} | {_shared(theirs, their)} "
            f"| {_ratio(ours.rate, theirs.rate)} "
            f"| {ours.milter_cpu_ms:.2f} | {theirs.milter_cpu_ms:.2f} "
            f"| {cpu_ratio:.2f}x | {mine.hog:.0%} / {their.hog:.0%} "
            f"| {_faults(ours)}, {_faults(theirs)} |"
        )
    return "\n".join(lines)


def floor_table(rows: Sequence[Row]) -> str:
    """Ours beside the null milters: msg/s, CPU per message, ours / C null."""
    names = [name for _, name in FLOOR_SIDES]
    lines = [
        "| conc. | "
        + " | ".join(f"{name} msg/s (other load)" for name in names)
        + " | ours / C null msg/s | "
        + " | ".join(f"{name} CPU ms/msg" for name in names)
        + " | ours / C null CPU | errors+timeouts / wrong results "
        + ", ".join(names)
        + " |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        results = [row[side] for side, _ in FLOOR_SIDES]
        ours, null_c = row["ours"], row["null_c"]
        cpu_ratio = ours.milter_cpu_ms / max(null_c.milter_cpu_ms, 1e-9)
        lines.append(
            f"| {row['concurrency']} | "
            + " | ".join(
                _shared(row[side], row[f"{side}_sharing"]) for side, _ in FLOOR_SIDES
            )
            + f" | {ours.rate / max(null_c.rate, 1e-9):.2f}x | "
            + " | ".join(f"{result.milter_cpu_ms:.2f}" for result in results)
            + f" | {cpu_ratio:.1f}x | "
            + ", ".join(_faults(result) for result in results)
            + " |"
        )
    return "\n".join(lines)


def tables(results: Mapping[str, Any], about: Mapping[str, object]) -> str:
    """Return every table of the parts that ran."""
    out = []
    if "matrix" in results:
        out += ["## Throughput and latency", matrix_table(results["matrix"])]
        out += ["## Highest concurrency", concurrency_table(results["matrix"])]
    if "cold" in results:
        out += ["## Cold cache, concurrency 1, 20 ms per DNS answer"]
        out += [cold_table(results["cold"])]
    if "socket" in results:
        out += ["## Unix and inet sockets, concurrency 1, warm"]
        out += [socket_table(results["socket"])]
    if "attack" in results:
        out += ["## Slow-DNS attack (check time limit 3 s)"]
        out += [attack_table(results["attack"])]
    if "contention" in results:
        out += ["## Beside a CPU hog (warm, unix socket)"]
        out += [contention_table(results["contention"])]
    if "floor" in results:
        out += ["## Against do-nothing milters of the same negotiation (include, warm)"]
        out += [floor_table(results["floor"])]
    if "e2e" in results:
        out += ["## Through Postfix", e2e_table(results["e2e"])]
    if "other_work" in results:
        shares = ", ".join(
            f"{part} {share:.0%}" for part, share in results["other_work"].items()
        )
        out.append(f"CPU used by other work on the machine, per part: {shares}")
    out.append(f"load average at the end: {' '.join(about['loadavg_end'])}")  # type: ignore[arg-type]
    return "\n\n".join(out)


def e2e_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Messages per second through Postfix and the milter's cost."""
    alone = next((r["rate"] for r in rows if r["milter"] == "none"), 0.0)
    null = next((r["rate"] for r in rows if r["milter"] == E2E_NULL), 0.0)
    lines = [
        "| Postfix with | msg/s | share of Postfix alone | milter cost "
        "| share of the C null milter | milter CPU ms/msg | errors |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        share = row["rate"] / alone if alone else 0.0
        of_null = f"{row['rate'] / null:.2f}x" if null else "-"
        lines.append(
            f"| {row['milter']} | {row['rate']:,.0f} | {share:.0%} "
            f"| {1 - share:.0%} | {of_null} | {row['milter_cpu_ms']:.2f} "
            f"| {row['errors'] or 'none'} |"
        )
    ours = next((r["rate"] for r in rows if r["milter"] == "ours"), 0.0)
    if null and ours:
        lines.append(
            f"\nours through Postfix: {ours / null:.2f}x the C null milter's "
            "msg/s (target: at least 0.9x)"
        )
    return "\n".join(lines)
