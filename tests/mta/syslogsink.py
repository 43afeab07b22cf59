"""A /dev/log stand-in: a unix datagram socket whose messages go to a file.

Sendmail logs only through syslog(3), and this machine has no syslogd (S3).
The sandbox links its private /dev/log to this socket; a thread of the test
process appends each message as one line. Nothing is left running after
``close()``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Final

from helpers.lifecycle import Managed

RECEIVE_SIZE: Final = 65536
POLL_INTERVAL: Final = 0.1  # how soon the thread sees close()
JOIN_TIMEOUT: Final = 5.0


class SyslogSink(Managed):
    """Receive syslog datagrams on ``socket_path``, append them to ``log_path``."""

    def __init__(self, socket_path: Path, log_path: Path) -> None:
        self.socket_path = socket_path
        self.log_path = log_path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self.socket_path.unlink(missing_ok=True)
        sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sink.bind(str(self.socket_path))
        self.socket_path.chmod(0o666)  # sendmail may log after dropping to nobody
        sink.settimeout(POLL_INTERVAL)
        self._socket = sink
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._serve,
            args=(sink, self._stop),
            name=f"syslog-sink {self.socket_path}",
            daemon=True,
        )
        self._thread.start()

    def _serve(self, sink: socket.socket, stop: threading.Event) -> None:
        with self.log_path.open("ab", buffering=0) as log:
            while not stop.is_set():
                try:
                    message = sink.recv(RECEIVE_SIZE)
                except TimeoutError:
                    continue
                except OSError:
                    return
                log.write(message.rstrip(b"\0\n") + b"\n")

    def stop(self) -> None:
        """Stop the thread (within a poll interval) and remove the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
            self._thread = None
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None
        self.socket_path.unlink(missing_ok=True)
