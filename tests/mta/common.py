"""What the Postfix and Sendmail fixtures share: their protocol and work dirs.

A scenario test written against ``Mta`` runs on either MTA::

    mta.reconfigure(milter=MilterSocket.unix(path), sasl_users={"bob": "pw"})
    result = smtp.send(mta.port, source="127.0.0.10", ...)
    delivery = mta.wait_for_delivery(message_id=result.message_id)
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from mta.delivery import DELIVERY_TIMEOUT, Delivery, Mailbox
from mta.wait import WaitTimeout

if TYPE_CHECKING:
    from mta.milterprocess import MilterSocket

WORK_ROOT: Final = Path("/tmp")
LOG_TAIL_LINES: Final = 40


def read_log(path: Path, since: int = 0) -> str:
    """Return an MTA's log from byte offset ``since`` ("" before it exists)."""
    try:
        with path.open("rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def log_size(path: Path) -> int:
    """Return the log's current size, to read only later lines with read_log()."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last lines of a log under a title, for error messages."""
    tail = read_log(path).splitlines()[-lines:]
    return "\n".join([f"--- {path} (last {len(tail)} lines) ---", *tail])


class LogAndMailbox:
    """What every MTA helper reads back the same way: its log and its deliveries.

    A helper sets ``log_file`` (its own log, not the system's) and
    ``mailbox`` (where its local delivery writes) in its constructor.
    """

    log_file: Path
    mailbox: Mailbox

    def maillog(self, since: int = 0) -> str:
        """Return the instance's log from byte offset ``since`` (see log_position)."""
        return read_log(self.log_file, since)

    def log_position(self) -> int:
        """Return the log's current size, to read only later lines with maillog()."""
        return log_size(self.log_file)

    def maillog_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last lines of the log, for error messages."""
        return log_tail(self.log_file, lines)

    def wait_for_delivery(
        self,
        predicate: Callable[[Delivery], bool] | None = None,
        *,
        subject: str | None = None,
        message_id: str | None = None,
        timeout: float = DELIVERY_TIMEOUT,
    ) -> Delivery:
        """Wait until a message matching every given criterion is delivered."""
        try:
            return self.mailbox.wait_for(
                predicate, subject=subject, message_id=message_id, timeout=timeout
            )
        except WaitTimeout as error:
            raise WaitTimeout(f"{error.what}\n{self.maillog_tail()}", timeout) from None

    def delivered(self) -> list[Delivery]:
        """Return every message delivered so far, oldest first."""
        return self.mailbox.delivered()


class WorkDirError(Exception):
    """A work dir cannot serve an MTA whose processes run as other users."""


class Mta(Protocol):
    """A private MTA on loopback ports that files every message it accepts."""

    @property
    def name(self) -> str:
        """``postfix`` or ``sendmail``."""
        ...

    @property
    def port(self) -> int:
        """The SMTP port, the same on 127.0.0.1 and (if ``ipv6``) on ::1."""
        ...

    @property
    def ipv6(self) -> bool: ...

    def reconfigure(
        self,
        *,
        milter: MilterSocket | None = None,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        """Use exactly this milter (None: none) and SMTP AUTH users (None: no AUTH).

        The milter is wired with README.md's lines; nothing happens when
        nothing changed.
        """
        ...

    def wait_for_delivery(
        self,
        predicate: Callable[[Delivery], bool] | None = None,
        *,
        subject: str | None = None,
        message_id: str | None = None,
        timeout: float = DELIVERY_TIMEOUT,
    ) -> Delivery: ...

    def delivered(self) -> list[Delivery]: ...

    def held(self) -> list[str]:
        """Return the queue ids of the messages a milter quarantined."""
        ...

    def maillog(self, since: int = 0) -> str: ...

    def log_position(self) -> int: ...

    def maillog_tail(self, lines: int = ...) -> str: ...


def make_public_dir(prefix: str) -> Path:
    """Create a fresh directory under /tmp that users postfix and nobody can walk.

    P6: mkdtemp() makes it 0700, and pytest's tmp_path sits under a 0700
    parent, so neither will do for a work dir or a milter's unix socket.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=WORK_ROOT))
    path.chmod(0o755)
    for directory in [path, *path.parents]:
        if not directory.stat().st_mode & 0o001:
            raise WorkDirError(f"{directory} is not world-traversable (o+x)")
    return path


def is_zombie(proc: Path) -> bool:
    """Tell whether /proc/PID is a zombie (exited, not yet reaped)."""
    # /proc/PID/stat: "pid (comm) state ..."; comm may contain spaces or ')'.
    after_comm = (proc / "stat").read_bytes().rpartition(b")")[2]
    return after_comm.split()[0] == b"Z"
