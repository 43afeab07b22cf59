"""A private OpenDMARC (Debian's ``opendmarc`` 1.4.2) as a milter for tests.

Usage::

    dns = port_53_server(zone)
    with OpenDmarc(work_dir, authserv_id="mx.test.example",
                   trusted_authserv_ids="mx.test.example",
                   nameserver=dns.addresses[0]) as dmarc:
        postfix.reload(milter=f"{ours.postfix}, {dmarc.socket.postfix}")
        ...
        dmarc.history(queue_id)   # {"spf": ["0"], "policy": ["15"], ...}

OpenDMARC finds ``_dmarc`` records through the C library's resolver, which
reads /etc/resolv.conf and asks port 53. So the daemon runs in a private
mount namespace (``unshare --mount``) where a resolv.conf of its own, naming
a test DNS server on a loopback address, is bind-mounted over the system
one; nothing outside the namespace sees it. Its configuration, socket, pid
file and history file live in ``work_dir``; nothing under /etc or /run is
read or written, and the system's opendmarc service is never started.

The settings are README.md's "Downstream filters" ones: our authserv-id in
``TrustedAuthservIDs``, ``SPFIgnoreResults false``, ``SPFSelfValidate false``.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.lifecycle import Managed
from mta.milterprocess import MilterProcess, MilterSocket

OPENDMARC: Final = "/usr/sbin/opendmarc"
UNSHARE: Final = "/usr/bin/unshare"
NOT_INSTALLED: Final = (
    f"OpenDMARC is not installed ({OPENDMARC}); scripts/test installs it"
)

# Run opendmarc with the private resolv.conf in a private mount namespace.
# exec keeps one PID, so the MilterProcess's PID is opendmarc's own.
SANDBOX: Final = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'


def port_53_server(zone: Zone) -> DnsServer:
    """Start a DNS server for ``zone`` on port 53 of some 127.53.x.y.

    The C library's resolver asks port 53 only; a random address of
    127.53.0.0/16 keeps clear of any other server on the machine. Name it
    in OpenDmarc's ``nameserver``.
    """
    for _ in range(20):
        address = f"127.53.{random.randint(0, 255)}.{random.randint(1, 254)}"
        server = DnsServer(zone, addresses=(address,), port=53)
        try:
            server.start()
        except OSError:
            continue
        return server
    raise RuntimeError("no free port 53 on 127.53.0.0/16")


def dmarc_field(values: Iterable[str]) -> str:
    """Return, unfolded, the first A-R value with a ``dmarc=`` result ("" if none)."""
    for value in values:
        if " dmarc=" in value:
            return "Authentication-Results: " + " ".join(value.split())
    return ""


def opendmarc_available() -> bool:
    """Tell whether the OpenDMARC daemon and unshare(1) are installed."""
    return Path(OPENDMARC).is_file() and shutil.which(UNSHARE) is not None


def render_config(
    work_dir: Path, socket: MilterSocket, authserv_id: str, trusted_ids: str
) -> str:
    """Return opendmarc.conf: private paths, our results trusted, no own SPF."""
    settings = {
        "AuthservID": authserv_id,
        "TrustedAuthservIDs": trusted_ids,
        "SPFIgnoreResults": "false",
        "SPFSelfValidate": "false",
        "Socket": socket.libmilter.replace("unix:", "local:", 1),
        "PidFile": str(work_dir / "opendmarc.pid"),
        "HistoryFile": str(work_dir / "history"),
        "UMask": "0000",  # M2: Postfix's smtpd (user postfix) connects
        "Syslog": "false",
        "RejectFailures": "false",
        "FailureReports": "false",
        "RequiredHeaders": "false",
        "IgnoreAuthenticatedClients": "true",
        "Background": "false",
    }
    return "".join(f"{name} {value}\n" for name, value in settings.items())


class OpenDmarc(Managed):
    """A private opendmarc milter on a unix socket in ``work_dir``."""

    def __init__(
        self,
        work_dir: Path,
        *,
        authserv_id: str,
        trusted_authserv_ids: str,
        nameserver: str,
    ) -> None:
        self.work_dir = work_dir
        self.config = work_dir / "opendmarc.conf"
        self.resolv_conf = work_dir / "resolv.conf"
        self.history_file = work_dir / "history"
        self.socket = MilterSocket.unix(work_dir / "opendmarc.sock")
        self.config.write_text(
            render_config(work_dir, self.socket, authserv_id, trusted_authserv_ids)
        )
        self.resolv_conf.write_text(f"nameserver {nameserver}\noptions attempts:1\n")
        argv = [
            UNSHARE, "--mount", "--propagation", "private",
            "sh", "-c", SANDBOX, "sandbox", str(self.resolv_conf),
            OPENDMARC, "-f", "-c", str(self.config),
        ]  # fmt: skip
        self.process = MilterProcess(
            argv, self.socket, output=work_dir / "opendmarc.out"
        )

    def start(self) -> None:
        """Start opendmarc and return once its socket takes connections."""
        self.process.start()

    def stop(self) -> int:
        """SIGTERM opendmarc and wait for it (seconds: M1)."""
        return self.process.stop()

    def close(self) -> None:
        self.process.kill()  # M1: libmilter's SIGTERM exit takes seconds

    def history(self, queue_id: str) -> dict[str, list[str]]:
        """Return the history record of ``queue_id``: keyword -> values.

        The history file holds one record per message, starting with
        ``job <queue id>``; ``spf`` is the SPF result it used, as an
        ARES_RESULT number (0 pass, 2 softfail, 3 neutral, 4 temperror,
        5 permerror, 6 none, 7 fail, -1 none found).
        """
        try:
            text = self.history_file.read_text(errors="replace")
        except FileNotFoundError:
            return {}
        record: dict[str, list[str]] = {}
        current = False
        for line in text.splitlines():
            keyword, _, value = line.partition(" ")
            if keyword == "job":
                current = value == queue_id
            if current:
                record.setdefault(keyword, []).append(value)
        return record

    def output(self) -> str:
        """Return what opendmarc wrote to stdout and stderr."""
        path = self.work_dir / "opendmarc.out"
        return path.read_text(errors="replace") if path.exists() else ""
