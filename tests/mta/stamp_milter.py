"""A tiny pymilter milter that stands for another filter in the MTA's chain.

It plays OpenDKIM, OpenDMARC or any milter listed before or after ours: at
end of message it adds the fields given on its command line, and it writes
the header fields it was shown (name and value, in order) to a journal, so a
test can see what the MTA shows a milter after the ones before it.

Run: ``python stamp_milter.py SOCKET --journal PATH [--add INDEX:NAME:VALUE]...``
where INDEX is ``append`` (smfi_addheader) or a number (smfi_insheader at
that index). A unix socket is created mode 0666 (M2).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import Milter

MILTER_NAME: Final = "stamp-milter"
MILTER_TIMEOUT: Final = 30
CONTINUE: Final[int] = Milter.CONTINUE
APPEND: Final = "append"


class Stamp:
    """The fields to add and the journal to write, shared by all connections."""

    def __init__(self, journal: Path, fields: list[tuple[str, str, str]]) -> None:
        self.journal = journal
        self.fields = fields
        self.lock = threading.Lock()

    def write(self, entry: dict[str, object]) -> None:
        with self.lock, self.journal.open("a") as journal:
            journal.write(json.dumps(entry) + "\n")


class StampMilter(Milter.Base):  # type: ignore[misc]
    """One instance per SMTP connection."""

    def __init__(self, stamp: Stamp) -> None:
        self.stamp = stamp
        self.seen: list[list[str]] = []

    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.seen = []
        return CONTINUE

    def header(self, name: str, value: str) -> int:
        self.seen.append([name, value])
        return CONTINUE

    def eom(self) -> int:
        for index, name, value in self.stamp.fields:
            if index == APPEND:
                self.addheader(name, value)
            else:
                self.addheader(name, value, int(index))
        queue_id = self.getsymval("i")
        self.stamp.write({"queue_id": queue_id, "headers": self.seen})
        return CONTINUE


def parse_field(text: str) -> tuple[str, str, str]:
    """Read ``INDEX:NAME:VALUE``; the value may hold colons."""
    index, name, value = text.split(":", 2)
    if index != APPEND and not index.isdigit():
        raise argparse.ArgumentTypeError(f"index must be a number or append: {text}")
    return index, name, value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("socket", help="libmilter socket, e.g. unix:/path")
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--add", type=parse_field, action="append", default=[])
    args = parser.parse_args(argv)
    if args.socket.startswith(("unix:", "local:")):
        os.umask(0o000)  # M2: smtpd runs as postfix and must write the socket
    stamp = Stamp(args.journal, args.add)
    Milter.factory = lambda: StampMilter(stamp)
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter(MILTER_NAME, args.socket, MILTER_TIMEOUT)


if __name__ == "__main__":
    main()
