"""One message through a milter, as Postfix's smtpd and cleanup send it.

The sequence is Postfix's for one SMTP session with one message and one
recipient: OPTNEG, connect, HELO, MAIL, RCPT, DATA, five header fields,
end of header, the body, end of message, then QUIT. Each event carries
Postfix's default macros for its stage (MTA-TESTING.md, "Macros each MTA
sends by default"), or the names the milter asked for instead; the queue
id (``i``) exists from DATA on. The connect hostname is the HELO name, as
for a client whose verified PTR name matches its HELO.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bench.loadshapes import Message
from bench.testhelpers import (
    BODY_CHUNK,
    SMFIC_BODY,
    SMFIC_BODYEOB,
    SMFIC_CONNECT,
    SMFIC_DATA,
    SMFIC_EOH,
    SMFIC_HEADER,
    SMFIC_HELO,
    SMFIC_MAIL,
    SMFIC_RCPT,
    Endpoint,
    MilterSession,
    Reply,
    Stage,
    Step,
    Verdict,
    connect_data,
    strings,
)

MTA_NAME: Final = "mta.bench.example"
CLIENT_PORT: Final = 40025
POSTFIX_MACROS: Final = {
    Stage.CONNECT: ("j", "{daemon_name}", "{daemon_addr}", "v", "_"),
    Stage.HELO: (
        "{tls_version}",
        "{cipher}",
        "{cipher_bits}",
        "{cert_subject}",
        "{cert_issuer}",
    ),
    Stage.ENVFROM: (
        "i",
        "{auth_type}",
        "{auth_authen}",
        "{auth_author}",
        "{mail_addr}",
        "{mail_host}",
        "{mail_mailer}",
    ),
    Stage.ENVRCPT: ("i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"),
    Stage.DATA: ("i",),
    Stage.EOH: ("i",),
    Stage.EOM: ("i",),
}
BODY: Final = (
    b"Hello,\r\n\r\n" + b"This is a benchmark message of about one kilobyte.\r\n" * 18
)
HELO_ONLY: Final = "helo-only"
_SPF_MAILFROM: Final = re.compile(r"spf=(\w+)[^;]*?smtp\.mailfrom", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one message: the decision, its SPF tag, its time."""

    verdict: str  # a Verdict value, "timeout" or "error:<exception name>"
    spf: str  # the MAIL FROM result in the added Authentication-Results, or ""
    seconds: float


def known_macros(message: Message) -> dict[str, str]:
    """Return every macro Postfix knows for ``message`` before DATA."""
    sender_domain = message.sender.rpartition("@")[2]
    return {
        "j": MTA_NAME,
        "{daemon_name}": MTA_NAME,
        "{daemon_addr}": "127.0.0.1",
        "v": "Postfix 3.7.11",
        "_": f"{message.helo} [{message.client_ip}]",
        "{client_addr}": message.client_ip,
        "{client_name}": message.helo,
        "{client_ptr}": message.helo,
        "{client_port}": str(CLIENT_PORT),
        "{mail_addr}": message.sender,
        "{mail_host}": sender_domain,
        "{mail_mailer}": "smtp",
        "{rcpt_addr}": message.recipient,
        "{rcpt_host}": message.recipient.rpartition("@")[2],
        "{rcpt_mailer}": "smtp",
    }


def header_fields(message: Message, n: int) -> list[tuple[str, str]]:
    """Return the message's header fields (Postfix hides its own Received)."""
    return [
        ("From", f"<{message.sender}>"),
        ("To", f"<{message.recipient}>"),
        ("Subject", f"load test message {n}"),
        ("Date", "Mon, 1 Jan 2024 00:00:00 +0000"),
        ("Message-ID", f"<{n}.load@{MTA_NAME}>"),
    ]


def mailfrom_result(reply: Reply) -> str:
    """Return the MAIL FROM SPF result of an added Authentication-Results.

    ``helo-only`` when the field carries a result for the HELO identity
    only (pyspf-milter does that when MAIL FROM gives none), "" when no
    field was added.
    """
    found_field = False
    for change in reply.modifications:
        if change.kind not in ("addheader", "insheader"):
            continue
        if change.name.lower() != "authentication-results":
            continue
        found_field = True
        found = _SPF_MAILFROM.search(change.value)
        if found:
            return found.group(1).lower()
    return HELO_ONLY if found_field else ""


class _Transaction:
    """The events of one message on one session."""

    def __init__(self, session: MilterSession, message: Message, n: int) -> None:
        self.session = session
        self.message = message
        self.n = n
        self.macros = known_macros(message)

    def stage_macros(self, stage: Stage) -> list[tuple[str, str]]:
        names = self.session.macro_names(stage, POSTFIX_MACROS[stage])
        return [(name, self.macros[name]) for name in names if name in self.macros]

    async def send(self, command: bytes, data: bytes, stage: Stage) -> Reply | None:
        """Send one event; return a decision that ends the message, or None."""
        reply = await self.session.event(command, data, self.stage_macros(stage))
        if reply is None or reply.verdict in (Verdict.CONTINUE, Verdict.SKIP):
            return None
        if command not in (SMFIC_CONNECT, SMFIC_HELO):
            self.session.abort()  # Postfix: milter8_abort at the end of the mail
        return reply

    async def run(self) -> Reply:
        """Run the whole message; return the decision that ended it."""
        await self.session.negotiate()
        message = self.message
        envelope: Sequence[tuple[bytes, bytes, Stage]] = (
            (
                SMFIC_CONNECT,
                connect_data(message.helo, message.client_ip, CLIENT_PORT),
                Stage.CONNECT,
            ),
            (SMFIC_HELO, strings(message.helo), Stage.HELO),
            (SMFIC_MAIL, strings(f"<{message.sender}>"), Stage.ENVFROM),
            (SMFIC_RCPT, strings(f"<{message.recipient}>"), Stage.ENVRCPT),
        )
        for command, data, stage in envelope:
            if decision := await self.send(command, data, stage):
                return decision
        self.macros["i"] = f"{self.n:010X}"  # the queue id exists from DATA on
        return await self.content()

    async def content(self) -> Reply:
        """Send DATA, the header, the body and the end of the message."""
        if decision := await self.send(SMFIC_DATA, b"", Stage.DATA):
            return decision
        lead = " " if self.session.negotiated.steps & Step.HDR_LEADSPC else ""
        for name, value in header_fields(self.message, self.n):
            data = strings(name, lead + value)
            if decision := await self.send(SMFIC_HEADER, data, Stage.EOH):
                return decision
        if decision := await self.send(SMFIC_EOH, b"", Stage.EOH):
            return decision
        for start in range(0, len(BODY), BODY_CHUNK):
            chunk = BODY[start : start + BODY_CHUNK]
            if decision := await self.send(SMFIC_BODY, chunk, Stage.EOM):
                return decision
        stage_macros = self.stage_macros(Stage.EOM)
        final = await self.session.event(SMFIC_BODYEOB, b"", stage_macros)
        if final is None:  # cannot happen: end of message always has a reply
            raise RuntimeError("no reply to the end of the message")
        return final


async def deliver(endpoint: Endpoint, message: Message, n: int) -> Outcome:
    """Send message ``n`` through the milter at ``endpoint``; time it.

    The time runs from the connect() to the decision on the message; the
    QUIT that follows is not counted. Errors propagate to the caller.
    """
    start = time.perf_counter()
    session = await MilterSession.open(endpoint)
    try:
        reply = await _Transaction(session, message, n).run()
        seconds = time.perf_counter() - start
        session.quit()
    finally:
        session.close()
    return Outcome(str(reply.verdict), mailfrom_result(reply), seconds)
