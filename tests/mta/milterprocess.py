"""Run a milter as a subprocess on a loopback or unix socket, and stop it.

``MilterSocket`` spells one socket the ways each side wants it: Postfix's
``smtpd_milters`` (``inet:127.0.0.1:9901``, ``unix:/path``) and libmilter's
``-p`` form (``inet:9901@127.0.0.1``, ``unix:/path``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from helpers.lifecycle import Managed
from mta.loopback import free_port, is_listening
from mta.wait import WaitTimeout, wait_until

START_TIMEOUT: Final = 30.0  # an upper bound: a busy machine is slow
# M1: libmilter takes up to ~6 s to exit after SIGTERM.
STOP_TIMEOUT: Final = 10.0
KILL_TIMEOUT: Final = 5.0


@dataclass(frozen=True, slots=True)
class MilterSocket:
    """A milter socket: a loopback TCP port, or a unix socket path."""

    port: int = 0
    path: Path | None = None
    host: str = "127.0.0.1"

    @classmethod
    def inet(cls, port: int | None = None, host: str = "127.0.0.1") -> MilterSocket:
        """A TCP socket on ``host``; port 0 or None picks a free one now."""
        return cls(port=port or free_port((host,)), host=host)

    @classmethod
    def unix(cls, path: Path) -> MilterSocket:
        return cls(path=path)

    @property
    def postfix(self) -> str:
        """The value for Postfix's smtpd_milters."""
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"

    @property
    def libmilter(self) -> str:
        """The value for libmilter's setconn() (pymilter's runmilter)."""
        if self.path is not None:
            return f"unix:{self.path}"
        family = "inet6" if ":" in self.host else "inet"
        return f"{family}:{self.port}@{self.host}"

    def is_ready(self) -> bool:
        """Tell whether the milter listens, without opening a milter session."""
        if self.path is None:
            return is_listening(self.host, self.port)
        if not self.path.is_socket():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            # A unix connect is the only check; libmilter drops it quietly.
            try:
                probe.connect(str(self.path))
            except OSError:
                return False
        return True


class MilterProcess(Managed):
    """A milter subprocess; ``start()`` returns once its socket is ready."""

    def __init__(
        self,
        argv: Sequence[str],
        milter_socket: MilterSocket,
        *,
        env: Mapping[str, str] | None = None,
        output: Path | None = None,
    ) -> None:
        """``output`` collects stdout and stderr (default: discarded)."""
        self.argv = list(argv)
        self.socket = milter_socket
        self.env = dict(env) if env is not None else None
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        self._output_file: IO[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and wait for its socket; raise if it exits first."""
        if self.output is not None:
            self._output_file = self.output.open("ab")
        sink = self._output_file or subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.argv, stdout=sink, stderr=sink, env=self.env, start_new_session=True
        )
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"milter {self.argv} exited with {process.returncode}"
                    f" before {self.socket.postfix} was ready{self._output_tail()}"
                )
            return self.socket.is_ready()

        try:
            wait_until(ready, timeout=timeout, what=f"milter on {self.socket.postfix}")
        except (WaitTimeout, RuntimeError):
            self.kill()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait (libmilter may take ~6 s, M1); SIGKILL at the deadline."""
        return self._end(signal.SIGTERM, timeout)

    def close(self) -> None:
        """SIGKILL at the end of a with-block: a test's milter needs no clean stop."""
        self.kill()

    def kill(self) -> int:
        """SIGKILL: for throwaway milters in tests, with no M1 delay."""
        return self._end(signal.SIGKILL, KILL_TIMEOUT)

    def _end(self, signum: signal.Signals, timeout: float) -> int:
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait(timeout=KILL_TIMEOUT)
        if self._output_file is not None:
            self._output_file.close()
            self._output_file = None
        if self.socket.path is not None:
            self.socket.path.unlink(missing_ok=True)
        return returncode

    def _output_tail(self) -> str:
        if self.output is None or not self.output.exists():
            return ""
        return "\n" + self.output.read_text(errors="replace")[-4000:]
