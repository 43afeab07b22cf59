"""A tiny pymilter milter that proves the MTA fixtures.

At end of message it adds::

    X-Echo: client=<ip> helo=<helo> from=<mailfrom> auth=<{auth_authen}> i=<queue id>

and it rejects any recipient whose local part is ``reject`` with
``550 5.7.1 echo says no``. Values are backslash-escaped (``\\xNN`` for bytes
outside printable ASCII, ``\\\\`` for a backslash) so the header can never carry
what a hostile client sent.

With ``--journal PATH`` it also appends one JSON object per callback, with the
arguments exactly as pymilter passed them (``surrogateescape`` strings), so
tests can see what Postfix handed to the milter (``mta.echo`` reads it).

Run: ``python echo_milter.py SOCKET [--journal PATH]``, where SOCKET is
libmilter's form (``inet:9901@127.0.0.1`` or ``unix:/path``). A unix socket
is created mode 0666, so Postfix's smtpd (user postfix) can connect (M2).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import Milter

MILTER_NAME: Final = "echo-milter"
MILTER_TIMEOUT: Final = 30  # seconds libmilter waits on the MTA
REJECT_LOCAL_PART: Final = "reject"
HEADER: Final = "X-Echo"
CONTINUE: Final[int] = Milter.CONTINUE
REJECT: Final[int] = Milter.REJECT


def escape(value: str | None) -> str:
    """Render an untrusted value as printable ASCII; None becomes empty."""
    if value is None:
        return ""
    raw = value.encode("utf-8", "surrogateescape")
    return "".join(
        chr(byte) if 0x20 <= byte < 0x7F and byte != 0x5C else f"\\x{byte:02x}"
        for byte in raw
    )


class Journal:
    """Appends one JSON line per event; libmilter calls from many threads."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.connections = itertools.count(1)

    def next_connection(self) -> int:
        """Return a number for a new connection (pymilter makes one object each)."""
        with self.lock:
            return next(self.connections)

    def write(self, event: str, connection: int, **fields: object) -> None:
        if self.path is None:
            return
        line = json.dumps({"event": event, "connection": connection, **fields})
        with self.lock, self.path.open("a") as journal:
            journal.write(line + "\n")


class EchoMilter(Milter.Base):  # type: ignore[misc]
    """One instance per SMTP connection (pymilter's factory)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.connection = journal.next_connection()
        self.client = ""
        self.helo: str | None = None
        self.mail_from: str | None = None

    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.client = hostaddr[0] if isinstance(hostaddr, tuple) else str(hostaddr)
        self.journal.write(
            "connect",
            self.connection,
            hostname=hostname,
            family=family,
            hostaddr=list(hostaddr) if isinstance(hostaddr, tuple) else hostaddr,
            macros=self._macros("j", "_", "{daemon_name}", "{client_addr}"),
        )
        return CONTINUE

    def hello(self, heloname: str) -> int:
        self.helo = heloname
        self.journal.write("helo", self.connection, helo=heloname)
        return CONTINUE

    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.mail_from = mailfrom
        self.journal.write(
            "mail",
            self.connection,
            mail_from=mailfrom,
            params=list(params),
            macros=self._macros("{auth_authen}", "{auth_type}", "{mail_addr}"),
        )
        return CONTINUE

    def envrcpt(self, to: str, *params: str) -> int:
        local_part = to.strip("<>").rpartition("@")[0].lower()
        rejected = local_part == REJECT_LOCAL_PART
        self.journal.write(
            "rcpt", self.connection, rcpt=to, params=list(params), rejected=rejected
        )
        if rejected:
            self.setreply("550", "5.7.1", "echo says no")
            return REJECT
        return CONTINUE

    def eom(self) -> int:
        queue_id = self.getsymval("i")
        auth = self.getsymval("{auth_authen}")
        value = " ".join(
            f"{key}={escape(item)}"
            for key, item in (
                ("client", self.client),
                ("helo", self.helo),
                ("from", self.mail_from),
                ("auth", auth),
                ("i", queue_id),
            )
        )
        self.addheader(HEADER, value)
        self.journal.write("eom", self.connection, queue_id=queue_id, header=value)
        return CONTINUE

    def close(self) -> int:
        self.journal.write("close", self.connection)
        return CONTINUE

    def _macros(self, *names: str) -> dict[str, str | None]:
        return {name: self.getsymval(name) for name in names}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("socket", help="libmilter socket, e.g. inet:9901@127.0.0.1")
    parser.add_argument("--journal", type=Path, help="append JSON events here")
    args = parser.parse_args(argv)
    if args.socket.startswith(("unix:", "local:")):
        os.umask(0o000)  # M2: smtpd runs as postfix and must write the socket
    Milter.factory = functools.partial(EchoMilter, Journal(args.journal))
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter(MILTER_NAME, args.socket, MILTER_TIMEOUT)


if __name__ == "__main__":
    main()
