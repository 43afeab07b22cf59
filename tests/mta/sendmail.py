"""A private Sendmail instance for end-to-end tests (MTA-TESTING.md's recipe).

Usage::

    dist = fetch_sendmail()                       # once per session (sendmaildist)
    with SendmailInstance(dist, milter="inet:9901@127.0.0.1") as sendmail:
        result = smtp.send(sendmail.port, source="127.0.0.10", rcpt_to=["b@y.test"])
        delivery = sendmail.wait_for_delivery(message_id=result.message_id)
        sendmail.reload(milter="unix:/tmp/x/milter.sock")    # a restart

``sendmail -bD`` runs as root in the foreground inside private UTS and mount
namespaces (``unshare``), where it has a FQDN hostname (S1), its own
/etc/hosts and /etc/resolv.conf (S2), a /dev/log read by a thread of the
test process (S3) and, with SMTP AUTH, its own /usr/lib/sasl2. It listens
on 127.0.0.1 (and optionally ::1) on a port found free at start, and files
every message as ``out/<queue id>.eml`` through a mailer running as nobody,
like the Postfix fixture. A changed configuration means a restart (S9:
SIGHUP re-execs, and a bad .cf would end the daemon). Every process of the
instance shares its namespaces, which is how ``stop()`` finds them all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from helpers.lifecycle import Managed
from mta.common import LogAndMailbox, is_zombie, make_public_dir
from mta.delivery import Mailbox
from mta.loopback import free_port, is_listening
from mta.sendmailconf import (
    SANDBOX_SCRIPT,
    SendmailLayout,
    SendmailSettings,
    create_layout,
    make_settings,
    write_config,
)
from mta.sendmaildist import SendmailDist
from mta.syslogsink import SyslogSink
from mta.wait import WaitTimeout, wait_until

if TYPE_CHECKING:
    from mta.milterprocess import MilterSocket

START_TIMEOUT: Final = 30.0  # an upper bound: a busy machine is slow
STOP_TIMEOUT: Final = 30.0  # an upper bound: a busy machine is slow
START_ATTEMPTS: Final = 3
UNSHARE: Final = ("unshare", "--uts", "--mount", "--propagation", "private")
SANDBOX_PATH: Final = "/usr/sbin:/usr/bin:/sbin:/bin"


class SendmailError(Exception):
    """The private Sendmail did not do what was asked; the message has its log tail."""


class SendmailInstance(LogAndMailbox, Managed):
    """A private Sendmail on loopback ports; see the module docstring."""

    name: Final = "sendmail"

    def __init__(
        self,
        dist: SendmailDist,
        *,
        milter: str = "",
        sasl_users: Mapping[str, str] | None = None,
        ipv6: bool = False,
        keep_work_dir: bool = False,
    ) -> None:
        """Prepare (but do not start) an instance.

        ``milter`` is the S= socket of README.md's INPUT_MAIL_FILTER line, in
        libmilter's form (``inet:9901@127.0.0.1``, ``unix:/path``); empty means
        none. ``sasl_users`` maps login (``user`` or ``user@realm``) to
        password and turns SMTP AUTH on (PLAIN, LOGIN); a bare ``user`` is in
        realm test.example. ``ipv6`` adds a listener on ``[::1]`` (same port).
        """
        self.dist = dist
        self.settings: SendmailSettings = make_settings(
            milter=milter, sasl_users=sasl_users
        )
        self.ipv6 = ipv6
        self.keep_work_dir = keep_work_dir
        self.layout = SendmailLayout(make_public_dir("spf-milter-sendmail-"))
        self.mailbox = Mailbox(self.layout.out_dir)
        self.log_file = self.layout.maillog
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._namespace: str | None = None
        self._output: IO[bytes] | None = None
        create_layout(self.layout)
        self._syslog = SyslogSink(self.layout.log_socket, self.layout.maillog)

    @property
    def work_dir(self) -> Path:
        return self.layout.work_dir

    @property
    def hosts(self) -> tuple[str, ...]:
        """The loopback addresses the daemon listens on."""
        return ("127.0.0.1", "::1") if self.ipv6 else ("127.0.0.1",)

    # -- start and stop ----------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the daemon and wait until it listens; raise SendmailError if not.

        The port is chosen free just before the start; if another process
        takes it first (sendmail logs "cannot bind"), the start is retried
        on a new port.
        """
        if not self._syslog.running:
            self._syslog.start()
        failure = ""
        for _ in range(START_ATTEMPTS):
            self.port = free_port(self.hosts)
            write_config(
                self.layout, self.settings, self.dist.cf_dir, self.port, self.ipv6
            )
            log_start = self.log_position()
            self._launch()
            try:
                self._wait_ready(timeout)
            except SendmailError as error:
                failure = str(error)
                self.stop()
                if "cannot bind" not in self.maillog(since=log_start):
                    break
            else:
                return
        raise SendmailError(failure)

    def _launch(self) -> None:
        argv = [
            *UNSHARE,
            "sh",
            "-e",
            "-c",
            SANDBOX_SCRIPT,
            "sandbox",
            str(self.work_dir),
            str(self.dist.binary),
            "-C",
            str(self.layout.cf),
            "-bD",
        ]
        self._output = self.layout.output.open("ab")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env={"PATH": SANDBOX_PATH},
            start_new_session=True,
        )
        self._namespace = None

    def _wait_ready(self, timeout: float) -> None:
        """Wait until sendmail listens on every host and wrote its own PID (S5)."""
        process = self.process
        if process is None:
            raise SendmailError("not started")

        def ready() -> bool:
            if process.poll() is not None:
                raise SendmailError(
                    f"sendmail exited with {process.returncode} at start\n"
                    f"{self._output_text()}{self.maillog_tail()}"
                )
            if self._namespace is None:
                self._namespace = self._sandbox_namespace(process.pid)
            return (
                self._namespace is not None
                and self._pid_file() == process.pid
                and all(is_listening(host, self.port) for host in self.hosts)
            )

        try:
            wait_until(ready, timeout=timeout, what=f"Sendmail on port {self.port}")
        except WaitTimeout as error:
            raise SendmailError(f"{error}\n{self.maillog_tail()}") from None

    @staticmethod
    def _sandbox_namespace(pid: int) -> str | None:
        """Return the UTS namespace of ``pid`` once unshare(1) has made it."""
        try:
            theirs = str(Path(f"/proc/{pid}/ns/uts").readlink())
        except OSError:
            return None
        ours = str(Path("/proc/self/ns/uts").readlink())
        return None if theirs == ours else theirs

    def _pid_file(self) -> int | None:
        try:
            return int(self.layout.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the daemon and make sure none of its processes is left.

        SIGTERM to the daemon (sendmail passes it on to its children), then
        wait for every process in the sandbox to go, and SIGKILL any still
        there at the deadline.
        """
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
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
        if process is not None:
            process.wait(timeout)  # reaped: no zombie left behind
        self.process = None
        if self._output is not None:
            self._output.close()
            self._output = None
        self.layout.pid_file.unlink(missing_ok=True)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the instance and remove its work dir (unless keep_work_dir)."""
        self.stop()
        self._syslog.close()
        if not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def processes(self) -> set[int]:
        """Return the live (not zombie) processes of this instance.

        The daemon, its SMTP children and the mailers all share the
        sandbox's UTS namespace, which no other process has.
        """
        found: set[int] = set()
        process = self.process
        if process is not None and process.poll() is None:
            found.add(process.pid)
        if self._namespace is None:
            return found
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if is_zombie(proc):
                    continue
                if str((proc / "ns" / "uts").readlink()) == self._namespace:
                    found.add(int(proc.name))
        return found

    # -- configuration -----------------------------------------------------------

    def reload(
        self,
        *,
        milter: str | None = None,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        """Change the given settings, keep the others, and restart if running."""
        current = self.settings
        self._apply(
            make_settings(
                milter=current.milter if milter is None else milter,
                sasl_users=dict(current.sasl_users)
                if sasl_users is None
                else sasl_users,
            )
        )

    def reset(
        self, *, milter: str = "", sasl_users: Mapping[str, str] | None = None
    ) -> None:
        """Set exactly these settings; free when nothing changed."""
        self._apply(make_settings(milter=milter, sasl_users=sasl_users))

    def reconfigure(
        self,
        *,
        milter: MilterSocket | None = None,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        """The common MTA protocol (mta.common.Mta): ``reset()`` to these."""
        self.reset(
            milter="" if milter is None else milter.libmilter, sasl_users=sasl_users
        )

    def _apply(self, wanted: SendmailSettings) -> None:
        if wanted == self.settings:
            return
        self.settings = wanted
        if self.process is not None:
            self.restart()

    # -- logs and deliveries -------------------------------------------------------

    def _output_text(self) -> str:
        try:
            text = self.layout.output.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return f"--- {self.layout.output} ---\n{text[-4000:]}\n" if text else ""

    def queued(self) -> list[Path]:
        """Return the queue files (qf*) of messages not delivered."""
        return sorted(self.layout.queue_dir.glob("qf*"))

    def held(self) -> list[str]:
        """Return the ids of quarantined messages (their queue files are hf*)."""
        return sorted(path.name[2:] for path in self.layout.queue_dir.glob("hf*"))
