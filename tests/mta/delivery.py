"""Messages the file sink delivered: ``out/<queue id>.eml`` plus its envelope.

A test sees each message three ways: the raw bytes exactly as delivered, a
parsed ``EmailMessage`` (``email.policy.default``), and ``raw_fields(name)``,
the header fields byte for byte, folding included.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Final

from mta.wait import wait_until

SUFFIX: Final = ".eml"
ENVELOPE_SUFFIX: Final = ".env"
DELIVERY_TIMEOUT: Final = 30.0  # an upper bound: a busy machine is slow


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivered message; the sink wrote it after the milter was done."""

    queue_id: str
    path: Path
    raw: bytes
    sender: str
    recipients: tuple[str, ...]
    # Parsed with email.policy.default; for the bytes as delivered, use raw.
    message: EmailMessage = field(compare=False, repr=False)

    @property
    def raw_header(self) -> bytes:
        """The header section as delivered, up to (not including) the blank line."""
        end = self.raw.find(b"\n\n")
        return self.raw if end < 0 else self.raw[: end + 1]

    def raw_fields(self, name: str) -> list[bytes]:
        """Return every ``name`` field as delivered: ``Name: value``, folds kept.

        The line break that ends each field is not included; inner line
        breaks of a folded field are.
        """
        wanted = name.lower().encode()
        return [f for f in _split_fields(self.raw_header) if _field_name(f) == wanted]

    def header(self, name: str) -> str | None:
        """Return the value of the first ``name`` field, unfolded and decoded."""
        value = self.message[name]
        return None if value is None else str(value)


def _split_fields(header: bytes) -> list[bytes]:
    """Split a header section into fields; a line starting with SP/HT continues one."""
    fields: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return [field.rstrip(b"\r\n") for field in fields]


def _field_name(field: bytes) -> bytes:
    return field.partition(b":")[0].strip().lower()


def read_delivery(path: Path) -> Delivery:
    """Read one delivered message and the envelope the sink wrote beside it."""
    envelope = path.with_suffix(ENVELOPE_SUFFIX).read_bytes()
    sender, *recipients = envelope.decode("utf-8", "surrogateescape").splitlines()
    raw = path.read_bytes()
    return Delivery(
        queue_id=path.stem,
        path=path,
        raw=raw,
        sender=sender,
        recipients=tuple(recipients),
        message=email.message_from_bytes(raw, policy=email.policy.default),
    )


class Mailbox:
    """The sink's output directory: list, find and wait for deliveries."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        # A published file never changes, so each is read once per session.
        self._read: dict[Path, Delivery] = {}

    def delivered(self) -> list[Delivery]:
        """Return every delivered message, oldest first."""
        for path in self._published():
            if path not in self._read:
                self._read[path] = read_delivery(path)
        return list(self._read.values())

    def clear(self) -> None:
        """Remove every delivered message (messages still on their way stay)."""
        for path in self._published():
            path.unlink(missing_ok=True)
            path.with_suffix(ENVELOPE_SUFFIX).unlink(missing_ok=True)
        self._read.clear()

    def _published(self) -> list[Path]:
        """Return the finished messages; the sink's temporary files start with a dot."""
        paths = [
            path
            for path in self.out_dir.glob(f"*{SUFFIX}")
            if not path.name.startswith(".")
        ]
        return sorted(paths, key=lambda path: (path.stat().st_mtime_ns, path.name))

    def wait_for(
        self,
        predicate: Callable[[Delivery], bool] | None = None,
        *,
        subject: str | None = None,
        message_id: str | None = None,
        timeout: float = DELIVERY_TIMEOUT,
    ) -> Delivery:
        """Poll until a delivered message matches every criterion given."""
        if predicate is None and subject is None and message_id is None:
            raise ValueError("wait_for needs a predicate, a subject or a message_id")

        def matches(delivery: Delivery) -> bool:
            message = delivery.message
            return (
                (subject is None or message["Subject"] == subject)
                and (message_id is None or message["Message-ID"] == message_id)
                and (predicate is None or predicate(delivery))
            )

        def find() -> Delivery | None:
            return next((d for d in self.delivered() if matches(d)), None)

        criteria = ", ".join(
            f"{key}={value!r}"
            for key, value in (("subject", subject), ("message_id", message_id))
            if value is not None
        )
        what = f"a delivery in {self.out_dir} with {criteria or 'the predicate'}"
        return wait_until(find, timeout=timeout, what=what)
