"""What /proc says about a process: CPU time, memory, threads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

TICKS: Final = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Memory:
    """A process's resident memory now and at its peak, and its threads."""

    rss_mb: float
    peak_rss_mb: float
    threads: int


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo ("unknown" if none)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "unknown"


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of all of ``pid``'s threads."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    # "pid (comm) state ...": comm may hold spaces; utime, stime are the
    # 14th and 15th fields (proc(5)), the 12th and 13th after the comm.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory(pid: int) -> Memory:
    """Return VmRSS, VmHWM and Threads from /proc/PID/status."""
    values: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(":")
        values[key] = value.strip()

    def megabytes(key: str) -> float:
        return int(values.get(key, "0 kB").split()[0]) / 1024

    return Memory(megabytes("VmRSS"), megabytes("VmHWM"), int(values["Threads"]))
