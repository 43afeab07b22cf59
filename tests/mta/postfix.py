"""A private Postfix instance for end-to-end tests (MTA-TESTING.md's recipe).

Usage::

    with PostfixInstance(milter="inet:127.0.0.1:9901") as postfix:
        result = smtp.send(postfix.port, mail_from="a@x.org", rcpt_to=["b@y.test"])
        delivery = postfix.wait_for_delivery(message_id=result.message_id)
        postfix.reload(milter="unix:/tmp/x/milter.sock", main_cf={...})

The instance has its own config, queue and data directories in a fresh work
dir under /tmp (mode 0755, pitfall P6), listens on 127.0.0.1 (and optionally
::1) on a port found free at start, and delivers every message to
``out/<queue id>.eml`` through a pipe(8) sink running as nobody. It never
touches /etc/postfix or a system-wide Postfix.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from helpers.lifecycle import Managed
from mta.common import LogAndMailbox, is_zombie, make_public_dir
from mta.delivery import Mailbox
from mta.loopback import free_port, is_listening
from mta.postfixconf import Layout, Settings, create_layout, make_settings, write_config
from mta.wait import WaitTimeout, wait_until

if TYPE_CHECKING:
    from mta.milterprocess import MilterSocket

__all__ = ["PostfixError", "PostfixInstance", "make_public_dir", "postfix_available"]

POSTFIX: Final = "/usr/sbin/postfix"
POSTQUEUE: Final = "/usr/sbin/postqueue"
START_TIMEOUT: Final = 30.0  # an upper bound: a busy machine is slow
STOP_TIMEOUT: Final = 30.0  # an upper bound: a busy machine is slow
COMMAND_TIMEOUT: Final = 30.0
START_ATTEMPTS: Final = 3
NOT_INSTALLED: Final = f"Postfix is not installed ({POSTFIX}); scripts/test installs it"


class PostfixError(Exception):
    """The private Postfix did not do what was asked; the message has its log tail."""


def postfix_available() -> bool:
    """Tell whether the Postfix binaries are installed."""
    return Path(POSTFIX).is_file()


class PostfixInstance(LogAndMailbox, Managed):
    """A private Postfix on loopback ports; see the module docstring."""

    name: Final = "postfix"

    def __init__(
        self,
        *,
        milter: str = "",
        mynetworks: Sequence[str] = (),
        sasl_users: Mapping[str, str] | None = None,
        main_cf: Mapping[str, str] | None = None,
        ipv6: bool = False,
        keep_work_dir: bool = False,
    ) -> None:
        """Prepare (but do not start) an instance.

        ``milter`` is the smtpd_milters (and non_smtpd_milters) value, such as
        ``inet:127.0.0.1:9901`` or ``unix:/path/milter.sock``; empty means none.
        ``main_cf`` settings are written last and override the defaults.
        ``sasl_users`` maps login (``user`` or ``user@realm``) to password and
        turns SMTP AUTH on (PLAIN, LOGIN); a bare ``user`` lives in realm
        test.example, so the milter sees ``{auth_authen}=user@test.example``.
        ``ipv6`` adds a listener on ``[::1]`` (same port).
        """
        self.settings: Settings = make_settings(
            milter=milter, mynetworks=mynetworks, sasl_users=sasl_users, main_cf=main_cf
        )
        self.ipv6 = ipv6
        self.keep_work_dir = keep_work_dir
        self.layout = Layout(make_public_dir("spf-milter-postfix-"))
        self.mailbox = Mailbox(self.layout.out_dir)
        self.log_file = self.layout.maillog
        self.port = 0
        create_layout(self.layout)

    @property
    def work_dir(self) -> Path:
        return self.layout.work_dir

    @property
    def config_dir(self) -> Path:
        return self.layout.config_dir

    @property
    def hosts(self) -> tuple[str, ...]:
        """The loopback addresses smtpd listens on."""
        return ("127.0.0.1", "::1") if self.ipv6 else ("127.0.0.1",)

    @property
    def listeners(self) -> list[str]:
        """The ``host:port`` values of master.cf."""
        return [
            f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
            for host in self.hosts
        ]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start master and wait until smtpd listens; raise PostfixError if not.

        The port is chosen free just before the start; if another process
        takes it first, the start is retried on a new port.
        """
        for _ in range(START_ATTEMPTS):
            self.port = free_port(self.hosts)
            write_config(self.layout, self.settings, self.listeners)
            log_start = self.log_position()
            done = self._postfix("start")
            if done.returncode == 0:
                self._wait_listening(timeout)
                return
            if "Address already in use" not in self.maillog(since=log_start):
                break
        raise PostfixError(self._failure("postfix start", done))

    def _wait_listening(self, timeout: float) -> None:
        try:
            wait_until(
                lambda: all(is_listening(host, self.port) for host in self.hosts),
                timeout=timeout,
                what=f"Postfix to listen on port {self.port}",
            )
        except WaitTimeout as error:
            raise PostfixError(f"{error}\n{self.maillog_tail()}") from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the instance and make sure none of its processes is left.

        ``postfix abort`` sends master the same SIGTERM as ``postfix stop``,
        but does not poll in whole seconds (``stop`` often slept 1 s). Master
        signals its children and exits; this waits for every process of the
        instance to go, and SIGKILLs any still there at the deadline.
        """
        if self.master_pid() is not None:
            self._postfix("abort")
        try:
            wait_until(
                lambda: not self.processes(),
                timeout=timeout,
                what=f"the processes of {self.work_dir} to exit",
            )
        except WaitTimeout:
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_until(
                lambda: not self.processes(),
                timeout=timeout,
                what=f"the processes of {self.work_dir} to die after SIGKILL",
            )

    def close(self) -> None:
        """Stop the instance and remove its work dir (unless keep_work_dir)."""
        self.stop()
        if not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def reload(
        self,
        *,
        milter: str | None = None,
        mynetworks: Sequence[str] | None = None,
        sasl_users: Mapping[str, str] | None = None,
        main_cf: Mapping[str, str] | None = None,
        timeout: float = STOP_TIMEOUT,
    ) -> None:
        """Change the given settings, keep the others, and reload.

        ``main_cf`` replaces all earlier extra settings. Nothing happens when
        the settings are unchanged.
        """
        current = self.settings
        wanted = make_settings(
            milter=current.milter if milter is None else milter,
            mynetworks=current.mynetworks if mynetworks is None else mynetworks,
            sasl_users=dict(current.sasl_users) if sasl_users is None else sasl_users,
            main_cf=dict(current.main_cf) if main_cf is None else main_cf,
        )
        self._apply(wanted, timeout)

    def reset(
        self,
        *,
        milter: str = "",
        mynetworks: Sequence[str] = (),
        sasl_users: Mapping[str, str] | None = None,
        main_cf: Mapping[str, str] | None = None,
        timeout: float = STOP_TIMEOUT,
    ) -> None:
        """Set exactly these settings (defaults for the rest), and reload.

        Nothing happens when the settings are unchanged, so a fixture can
        call this before every test for free.
        """
        wanted = make_settings(
            milter=milter, mynetworks=mynetworks, sasl_users=sasl_users, main_cf=main_cf
        )
        self._apply(wanted, timeout)

    def reconfigure(
        self,
        *,
        milter: MilterSocket | None = None,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        """The common MTA protocol (mta.common.Mta): ``reset()`` to these."""
        self.reset(
            milter="" if milter is None else milter.postfix, sasl_users=sasl_users
        )

    def _apply(self, wanted: Settings, timeout: float) -> None:
        """Write ``wanted`` and, if running, ``postfix reload``.

        Then wait until every smtpd of the old configuration has exited, so
        the next session is served under the new one (a session still open
        in the test keeps its smtpd alive: close it before reloading).
        """
        if wanted == self.settings:
            return
        self.settings = wanted
        write_config(self.layout, self.settings, self.listeners)
        if self.master_pid() is None:
            return
        old_smtpds = self._smtpd_pids()
        done = self._postfix("reload")
        if done.returncode != 0:
            raise PostfixError(self._failure("postfix reload", done))
        wait_until(
            lambda: not (old_smtpds & self._smtpd_pids()),
            timeout=timeout,
            what="smtpd processes of the old configuration to exit",
        )

    def master_pid(self) -> int | None:
        """Return the pid of this instance's running master, or None."""
        try:
            pid = int(self.layout.master_pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid in self.processes() else None

    def processes(self) -> set[int]:
        """Return the live (not zombie) processes that belong to this instance.

        Postfix daemons carry no path in their command line, but master and
        every child inherit ``MAIL_CONFIG=<config_dir>``; the sink's command
        line names the work dir.
        """
        marker = f"MAIL_CONFIG={self.config_dir}".encode()
        work_dir = str(self.work_dir).encode()
        found: set[int] = set()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if is_zombie(proc):
                    continue
                environ = (proc / "environ").read_bytes().split(b"\0")
                if marker in environ or work_dir in (proc / "cmdline").read_bytes():
                    found.add(int(proc.name))
        return found

    def _smtpd_pids(self) -> set[int]:
        pids = set()
        for pid in self.processes():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "smtpd":
                    pids.add(pid)
        return pids

    def mailq(self) -> list[dict[str, object]]:
        """Return the queue as ``postqueue -j`` reports it (one dict per message)."""
        done = subprocess.run(
            [POSTQUEUE, "-c", str(self.config_dir), "-j"],
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise PostfixError(self._failure("postqueue -j", done))
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def held(self) -> list[str]:
        """Return the ids of the messages in the hold queue (a milter quarantined)."""
        return [
            str(entry["queue_id"])
            for entry in self.mailq()
            if entry.get("queue_name") == "hold"
        ]

    def queue_ids(self) -> list[str]:
        """Return the ids of the messages still in the queue."""
        return [str(entry["queue_id"]) for entry in self.mailq()]

    def _postfix(self, command: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), command],
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            env=_clean_environment(),
        )

    def _failure(self, what: str, done: subprocess.CompletedProcess[bytes]) -> str:
        output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
        return f"{what} exited with {done.returncode}: {output}\n{self.maillog_tail()}"


def _clean_environment() -> dict[str, str]:
    """Return the environment for postfix(1); never a MAIL_CONFIG of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}
