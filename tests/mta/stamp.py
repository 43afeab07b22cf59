"""The test side of the stamp milter: start it, and read what it was shown.

The milter program itself is ``stamp_milter.py`` (run as a script, it needs
only pymilter); this module never imports pymilter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from mta.milterprocess import MilterProcess, MilterSocket

STAMP_MILTER: Final = Path(__file__).with_name("stamp_milter.py")


def stamp_milter(work_dir: Path, name: str, *fields: str) -> MilterProcess:
    """Prepare a stamp milter on ``work_dir/<name>.sock`` (start it with ``with``).

    ``fields`` are ``INDEX:NAME:VALUE`` (see stamp_milter.py); the journal
    is ``work_dir/<name>.jsonl``. ``work_dir`` must be o+x for Postfix (P6).
    """
    milter_socket = MilterSocket.unix(work_dir / f"{name}.sock")
    adds = [arg for field in fields for arg in ("--add", field)]
    argv = [sys.executable, str(STAMP_MILTER), milter_socket.libmilter]
    return MilterProcess(
        [*argv, "--journal", str(work_dir / f"{name}.jsonl"), *adds],
        milter_socket,
        output=work_dir / f"{name}.out",
    )


def shown_headers(work_dir: Path, name: str, queue_id: str) -> list[tuple[str, str]]:
    """Return the header fields milter ``name`` was shown for ``queue_id``."""
    journal = work_dir / f"{name}.jsonl"
    entries: list[dict[str, Any]] = [
        json.loads(line) for line in journal.read_text().splitlines() if line
    ]
    (entry,) = [e for e in entries if e["queue_id"] == queue_id]
    return [(name, value) for name, value in entry["headers"]]
