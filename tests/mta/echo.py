"""The test side of the echo milter: start it, and read what it saw.

The milter program itself is ``echo_milter.py`` (run as a script, it needs
only pymilter); this module never imports pymilter.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mta.milterprocess import MilterProcess, MilterSocket

ECHO_MILTER: Final = Path(__file__).with_name("echo_milter.py")


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Return the journal's events, oldest first (missing file: none yet)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class EchoMilter:
    """A running echo milter: where Postfix finds it, and what it has seen."""

    process: MilterProcess
    journal: Path

    @property
    def socket(self) -> MilterSocket:
        return self.process.socket

    def events(self) -> list[dict[str, Any]]:
        """Return every callback the milter has journaled so far."""
        return read_journal(self.journal)

    def session(self, queue_id: str) -> list[dict[str, Any]]:
        """Return the events of the connection that handled ``queue_id``.

        The eom event carries the queue id; the journal has it before the MTA
        answers the final dot, so this needs no waiting after ``send()``.
        """
        events = self.events()
        connections = {
            event["connection"]
            for event in events
            if event["event"] == "eom" and event["queue_id"] == queue_id
        }
        return [event for event in events if event["connection"] in connections]

    def event(self, queue_id: str, name: str) -> dict[str, Any]:
        """Return the one ``name`` event (connect, helo, mail, eom) of a message."""
        found = [event for event in self.session(queue_id) if event["event"] == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} {name!r} events for queue id {queue_id}")
        return found[0]


def start_echo_milter(milter_socket: MilterSocket, work_dir: Path) -> EchoMilter:
    """Start the echo milter on ``milter_socket``, journaling into ``work_dir``.

    For a unix socket, ``work_dir`` and every ancestor must be o+x (P6), since
    Postfix's smtpd connects as user postfix.
    """
    name = f"echo-{milter_socket.port or 'unix'}"
    journal = work_dir / f"{name}.jsonl"
    argv = [sys.executable, str(ECHO_MILTER), milter_socket.libmilter]
    process = MilterProcess(
        [*argv, "--journal", str(journal)],
        milter_socket,
        output=work_dir / f"{name}.out",
    )
    process.start()
    return EchoMilter(process, journal)
