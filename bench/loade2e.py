"""End to end through a private Postfix: no milter, a null milter, ours, pyspf.

Postfix's own load generator, smtp-source, sends the mixed workload's
senders to a private Postfix (tests/mta/postfix.py, inside the benchmark's
namespace) that accepts every message and discards it (``discard:`` as the
transport: the helper's master.cf has no smtp(8) client to relay to
smtp-sink, and delivery is not what a milter changes). One smtp-source
process per sender domain of the mix runs at once, with sessions in
proportion to the domain's weight, one message per session. smtp-source
connects from 127.0.0.1 and cannot vary the client address, so the
clients' results are fail (none for the domain without a record), but each
check does the same DNS and evaluation work as for an intended client:
every term of every record is evaluated.

The figure is messages per second from the first connection to the last
message accepted, and the milter's cost is how much of Postfix's own
throughput (no milter) is lost with it. The C null milter
(bench/nullmilter.c: does nothing, negotiates as ours does) is the floor
of any milter through Postfix; ours' throughput is also shown as a share
of it.
"""

from __future__ import annotations

import subprocess
import time
from typing import Final

from bench import loadreport, procstat
from bench.loadbench import Bench
from bench.loadshapes import HELO, RECIPIENT, SHAPES
from bench.testhelpers import PostfixInstance

SMTP_SOURCE: Final = "/usr/sbin/smtp-source"
# The mixed workload's senders (bench/loadshapes.py MIXED without its
# fresh share: smtp-source sends one sender per process), and sessions each.
SESSIONS: Final = {"include": 5, "ip4": 4, "mx": 3, "a": 2, "ip4-fail": 2, "none": 2}
MESSAGE_SIZE: Final = 1000
RUN_TIMEOUT: Final = 600.0
DRAIN_TIMEOUT: Final = 60.0
MAIN_CF: Final = {
    "default_transport": "discard:benchmark",
    "relay_transport": "discard:benchmark",
    "smtpd_client_connection_count_limit": "0",
    "smtpd_client_connection_rate_limit": "0",
    "default_process_limit": "200",
}


def _sources(port: int, total: int) -> list[tuple[subprocess.Popen[bytes], int]]:
    """Start one smtp-source per sender domain; share ``total`` by weight."""
    sessions = sum(SESSIONS.values())
    processes = []
    for shape, count in SESSIONS.items():
        messages = max(count, total * count // sessions)
        command = [
            SMTP_SOURCE,
            *("-s", str(count), "-m", str(messages), "-l", str(MESSAGE_SIZE)),
            *("-M", HELO, "-f", f"user@{SHAPES[shape].domain}", "-t", RECIPIENT),
            f"127.0.0.1:{port}",
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        processes.append((process, messages))
    return processes


def _send(port: int, total: int) -> tuple[int, float, str]:
    """Run the smtp-source processes; return messages, seconds, any errors."""
    start = time.perf_counter()
    processes = _sources(port, total)
    errors = []
    sent = 0
    for process, messages in processes:
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
        if process.returncode != 0 or output.strip():
            errors.append(output.decode(errors="replace").strip()[-300:])
        sent += messages
    return sent, time.perf_counter() - start, "\n".join(errors)


def _drain(postfix: PostfixInstance) -> None:
    """Wait until Postfix has discarded every message of the run."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while postfix.queue_ids() and time.monotonic() < deadline:
        time.sleep(0.2)


def _measure(
    postfix: PostfixInstance, pid: int | None, total: int
) -> dict[str, object]:
    before = procstat.cpu_seconds(pid) if pid else 0.0
    sent, seconds, errors = _send(postfix.port, total)
    cpu = procstat.cpu_seconds(pid) - before if pid else 0.0
    _drain(postfix)
    return {
        "messages": sent,
        "seconds": seconds,
        "rate": sent / seconds,
        "milter_cpu_ms": cpu * 1000 / max(sent, 1),
        "errors": errors,
    }


def run(bench: Bench) -> list[dict[str, object]]:
    """Postfix alone, with the C null milter, ours, pyspf-milter; mixed senders."""
    ours, theirs = bench.pair("unix")
    null_c, _ = bench.floor("unix")
    total = bench.options.e2e_messages
    rows: list[dict[str, object]] = []
    runs = (
        ("none", None),
        (loadreport.E2E_NULL, null_c),
        ("ours", ours),
        ("pyspf-milter", theirs),
    )
    with PostfixInstance(main_cf=MAIN_CF) as postfix:
        for name, milter in runs:
            spec = "" if milter is None else str(milter.endpoint)
            postfix.reset(milter=spec, main_cf=MAIN_CF)
            _measure(postfix, None, total // 10)  # warm-up: processes, caches
            row = _measure(postfix, milter.pid if milter else None, total)
            row["milter"] = name
            print(
                f"postfix + {name:13} {row['rate']:7,.0f} msg/s "
                f"({row['messages']} in {row['seconds']:.1f} s) {row['errors']}",
                flush=True,
            )
            rows.append(row)
    return rows
