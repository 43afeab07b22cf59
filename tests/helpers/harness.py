"""Drive the milter callbacks without an MTA, through pymilter's TestCtx.

``MilterHarness`` builds a Service from configuration text and an in-memory
zone, and runs SMTP sessions against SpfMilter exactly in libmilter's order
(connect, helo, envfrom, envrcpt..., header..., eom), recording every reply,
header change and quarantine.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import Milter
from Milter.testctx import TestCtx

from helpers.dnszone import Zone
from helpers.fakelookup import FakeLookup
from spf_milter.callbacks import SpfMilter
from spf_milter.config import load_all
from spf_milter.eventloop import EventLoop
from spf_milter.service import Service, make_settings


class RecordingCtx(TestCtx):  # type: ignore[misc]
    """A TestCtx that records header edits and quarantines as libmilter calls."""

    def __init__(self) -> None:
        super().__init__()
        self.added: list[tuple[str, str, int]] = []
        self.changed: list[tuple[str, int, str]] = []
        self.quarantined: list[str] = []

    def addheader(self, field: str, value: str, idx: int) -> None:
        self.added.append((field, value, idx))

    def chgheader(self, field: str, idx: int, value: str) -> None:
        self.changed.append((field, idx, value))

    def quarantine(self, reason: str) -> None:
        self.quarantined.append(reason)

    # TestCtx ends the session on any answer but CONTINUE, NOREPLY included:
    # an MTA that negotiated no reply for a step reads none and goes on.
    def _helo(self, helo: str) -> int:
        return self._step(Milter.M_HELO, "hello", helo)

    def _envfrom(self, *args: str) -> int:
        return self._step(Milter.M_ENVFROM, "envfrom", *args)

    def _step(self, stage: int, callback: str, *args: str) -> int:
        self._stage = stage
        try:
            code: int = getattr(self._priv, callback)(*args)
        finally:
            self._stage = None
        if code not in (Milter.CONTINUE, Milter.NOREPLY):
            self._close()
        return code

    def getsymval(self, name: str) -> str | None:
        # pymilter's C module decodes macro values strictly as UTF-8: a bytes
        # value given to the harness is decoded the same way.
        value = super().getsymval(name)
        return value.decode("utf-8") if isinstance(value, bytes) else value


@dataclass
class Session:
    """What one SMTP session got from the milter."""

    ctx: RecordingCtx
    milter: SpfMilter
    replies: dict[str, int] = field(default_factory=dict)  # step -> return code
    rcpt_replies: list[tuple[int, Any]] = field(default_factory=list)

    @property
    def added(self) -> dict[str, str]:
        return {name: value for name, value, _ in self.ctx.added}


class MilterHarness:
    """A Service on a FakeLookup, and sessions driven through TestCtx."""

    def __init__(self, config_path: Path, zone: Zone) -> None:
        configuration = load_all(config_path)
        self.lookup = FakeLookup(zone)
        settings = make_settings(configuration, self.lookup)
        self.loop = EventLoop()
        self.loop.start()
        self.service = Service(config_path, settings, self.loop)
        self._ids = iter(range(1, 1_000_000))

    def close(self) -> None:
        self.loop.stop()

    def with_settings(self, **changes: Any) -> None:
        """Replace daemon config fields (e.g. dry_run=True) for later sessions."""
        settings = self.service.settings
        config = dataclasses.replace(settings.config, **changes)
        self.service._settings = dataclasses.replace(settings, config=config)

    @contextmanager
    def factory(self) -> Iterator[None]:
        saved = Milter.factory
        Milter.factory = lambda: SpfMilter(self.service, next(self._ids))
        try:
            yield
        finally:
            Milter.factory = saved

    def session(
        self,
        *,
        client_ip: str = "192.0.2.10",
        helo: str = "mail.example.net",
        mail_from: str = "alice@example.net",
        recipients: Sequence[str] = ("bob@example.com",),
        headers: Sequence[tuple[str, str]] = (("Subject", "test"),),
        macros: dict[str, str | bytes] | None = None,
    ) -> Session:
        """Run one transaction and return what the milter answered."""
        ctx = RecordingCtx()
        for name, value in (macros or {}).items():
            ctx._setsymval(name, value)
        with self.factory():
            ctx._negotiate()
            ctx._stage = Milter.M_CONNECT
            family = socket.AF_INET6 if ":" in client_ip else socket.AF_INET
            code = Milter.connect_callback(ctx, f"[{client_ip}]", family, client_ip)
            session = Session(ctx, ctx.getpriv(), {"connect": code})
            session.replies["helo"] = ctx._helo(helo)
            session.replies["envfrom"] = ctx._envfrom(f"<{mail_from}>")
            for recipient in recipients:
                code = ctx._envrcpt(f"<{recipient}>")
                session.rcpt_replies.append((code, ctx._reply))
                ctx._reply = None
            for name, value in headers:
                ctx._stage = Milter.M_EOH
                session.milter.header(name, value)
            ctx._body = True  # TestCtx allows header edits only "in eom"
            ctx._stage = Milter.M_EOM
            session.replies["eom"] = session.milter.eom()
            session.replies["close"] = session.milter.close()
        return session
