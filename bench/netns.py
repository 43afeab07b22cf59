"""A private network namespace for the load benchmark, and its DNS server.

pyspf-milter asks the resolver of /etc/resolv.conf, so the benchmark runs
in a network and mount namespace of its own (``unshare --net --mount``):
only ``lo`` exists there, and a private resolv.conf bind-mounted over
/etc/resolv.conf names 127.0.0.1, where bench/loaddns.py listens on port
53. Nothing of this is visible outside the namespace, and no packet can
leave it. Both milters, the DNS server, the load client (and the Postfix
of the end-to-end run) live inside.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from pathlib import Path
from typing import Final, NoReturn

from bench import procstat

MARKER: Final = "SPF_BENCH_NETNS"
RESOLV_CONF: Final = Path("/etc/resolv.conf")
# Per-namespace settings: many short milter connections over inet sockets.
SYSCTLS: Final = {
    "net/ipv4/ip_local_port_range": "1024 65535",
    "net/ipv4/tcp_tw_reuse": "1",
}
DNS_ANSWER_TIMEOUT: Final = 10.0


def inside() -> bool:
    """Tell whether this process runs in the benchmark's namespace."""
    return os.environ.get(MARKER) == "1"


def reexec(argv: list[str]) -> NoReturn:
    """Run this script again inside a new network and mount namespace."""
    if os.geteuid() != 0:
        raise SystemExit("the load benchmark needs root (unshare --net --mount)")
    command = [
        "unshare",
        "--net",
        "--mount",
        "--propagation",
        "private",
        "--",
        "env",
        f"{MARKER}=1",
        sys.executable,
        *argv,
    ]
    os.execvp(command[0], command)  # noqa: S606 - a fixed argv, no shell


def prepare(work: Path) -> None:
    """Bring up lo, tune the namespace, point resolv.conf at 127.0.0.1."""
    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        raise RuntimeError(f"not a private network namespace: {interfaces}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for key, value in SYSCTLS.items():
        Path("/proc/sys", key).write_text(value)
    resolv = work / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:1\n")
    subprocess.run(["mount", "--bind", str(resolv), str(RESOLV_CONF)], check=True)


class DnsServer:
    """bench/loaddns.py as a child process, driven through its stdin."""

    def __init__(self, log: Path) -> None:
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.loaddns", "--port", "53"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        ready = self._answer()
        if not ready.startswith("ok listening"):
            raise RuntimeError(f"DNS server did not start: {ready!r}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def command(self, line: str) -> str:
        """Send one control command; return its answer line."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self._answer()
        if not answer.startswith("ok"):
            raise RuntimeError(f"DNS server: {line!r} -> {answer!r}")
        return answer

    def set_delay(self, seconds: float) -> None:
        """Delay every answer by ``seconds``."""
        self.command(f"delay {seconds}")

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.pid)

    def _answer(self) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], DNS_ANSWER_TIMEOUT)
        if not ready:
            raise RuntimeError(f"DNS server silent for {DNS_ANSWER_TIMEOUT} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("DNS server exited")
        return line.strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
