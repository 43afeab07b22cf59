"""Run the real ``spf-milter run`` daemon as a subprocess, as a user would.

``MilterDaemon`` writes a configuration and a policy into a work directory,
starts the console script, waits until the socket accepts connections and
stops it with SIGTERM (SIGKILL after a bound). Its stderr log is kept in a
file so tests can read what the daemon logged; leaving a ``with`` block fails
the test if the daemon logged anything at WARNING or above that the test did
not declare (``expected_log``, ``expect_log()``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.lifecycle import Managed
from mta.common import make_public_dir

START_TIMEOUT = 30.0  # generous: a busy machine starts slowly
STOP_TIMEOUT = 10.0  # the daemon stops well within 1 s; generous for a busy machine
# A line of the daemon's stderr log (logsetup.STDERR_FORMAT) at WARNING or above.
SERIOUS = re.compile(
    r"^\S+ \S+ (?:WARNING|ERROR|CRITICAL) (?P<message>.*)$", re.MULTILINE
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def console_script() -> str:
    """Return the installed ``spf-milter`` script next to this Python."""
    script = Path(sys.executable).with_name("spf-milter")
    return (
        str(script) if script.exists() else shutil.which("spf-milter") or "spf-milter"
    )


class MilterDaemon(Managed):
    """The daemon with the given config and policy, as a subprocess.

    It listens on ``inet:PORT@127.0.0.1``, or with ``unix_socket=True`` on a
    unix socket in ``work_dir`` (mode 0666: the MTA's user must reach it, so
    every ancestor of ``work_dir`` must be o+x). Over loopback TCP, Postfix
    and libmilter lose ~90 ms per message to Nagle and delayed ACKs.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        config: str,
        policy: str,
        nameserver: str,
        unix_socket: bool = False,
        expected_log: Sequence[str] = (),
    ) -> None:
        self.work_dir = work_dir
        # Patterns of the WARNING-or-above lines this test provokes on purpose;
        # any other such line fails the test when the daemon is left (STYLE.md).
        self.expected_log = list(expected_log)
        self.port = free_port()
        self.socket_path = work_dir / "spf-milter.sock"
        self.config_path = work_dir / "spf-milter.yaml"
        self.policy_path = work_dir / "policy.yaml"
        self.log_path = work_dir / "daemon.log"
        (work_dir / "policy.d").mkdir(parents=True, exist_ok=True)
        if unix_socket:
            self.listen = f'socket: unix:{self.socket_path}\nsocket_mode: "0666"\n'
            self.milter_spec = f"unix:{self.socket_path}"
        else:
            self.listen = f"socket: inet:{self.port}@127.0.0.1\n"
            self.milter_spec = f"inet:127.0.0.1:{self.port}"
        # A timeout long enough for a loopback answer on a busy machine, short
        # enough for the tests of names that are never answered.
        self.dns = (
            f'dns:\n  nameservers: ["{nameserver}"]\n  timeout: 3\n  time_limit: 10\n'
        )
        self.rewrite_config(config)
        self.policy_path.write_text(policy)
        self.process: subprocess.Popen[bytes] | None = None

    def rewrite_config(self, config: str) -> None:
        """Write the configuration, keeping the socket and DNS settings.

        As root, the daemon refuses to start without a user to switch to;
        unless the test sets one, say explicitly that root is meant.
        """
        if os.geteuid() == 0 and "user:" not in config:
            config = "user: root\n" + config
        self.config_path.write_text(self.listen + self.dns + config)

    def _listening(self) -> bool:
        """Tell whether the socket takes connections (a stale file does not)."""
        if self.milter_spec.startswith("unix:"):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = str(self.socket_path)
        else:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = ("127.0.0.1", self.port)
        with probe:
            probe.settimeout(0.5)
            try:
                probe.connect(address)
            except OSError:
                return False
            return True

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [console_script(), "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"spf-milter exited at start:\n{self.log()}")
            if self._listening():
                return
            time.sleep(0.05)
        raise RuntimeError(f"spf-milter did not listen within {START_TIMEOUT} s")

    def signal(self, signum: int) -> None:
        if self.process is not None:
            self.process.send_signal(signum)

    def reload(self) -> str:
        """Send SIGHUP; return the log lines the reload wrote once it is done."""
        start = len(self.log())
        self.signal(signal.SIGHUP)
        text = self.wait_for_log(
            lambda t: "reloaded" in t[start:] or "reload failed" in t[start:]
        )
        return text[start:]

    def wait_for_log(
        self, predicate: Callable[[str], bool], timeout: float = 30.0
    ) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if predicate(text):
                return text
            time.sleep(0.05)
        raise AssertionError(f"log condition not met within {timeout} s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT)
        return process.returncode

    def log(self) -> str:
        return (
            self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        )

    def expect_log(self, pattern: str) -> None:
        """Allow WARNING-or-above lines matching ``pattern`` (re.search)."""
        self.expected_log.append(pattern)

    def unexpected_log(self) -> list[str]:
        """Return the WARNING-or-above lines no expected pattern allows."""
        return [
            line.group(0)
            for line in SERIOUS.finditer(self.log())
            if not any(re.search(p, line.group("message")) for p in self.expected_log)
        ]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop; after a passing block, fail on WARNING lines no test expected."""
        super().__exit__(exc_type, exc, traceback)
        if exc_type is None:
            unexpected = self.unexpected_log()
            assert unexpected == [], "the daemon logged:\n" + "\n".join(unexpected)


@contextlib.contextmanager
def serving(
    prefix: str, zone: Zone, *, config: str, policy: str
) -> Iterator[MilterDaemon]:
    """Run a daemon on a unix socket with its own loopback DNS serving ``zone``.

    Its work dir is under /tmp and walkable by other users (an MTA reads the
    socket), and removed afterwards.
    """
    work_dir = make_public_dir(prefix)
    try:
        with DnsServer(zone) as dns:
            daemon = MilterDaemon(
                work_dir,
                config=config,
                policy=policy,
                nameserver=f"127.0.0.1:{dns.port}",
                unix_socket=True,
            )
            with daemon:
                yield daemon
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
