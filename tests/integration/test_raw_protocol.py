"""Hostile bytes straight over the milter protocol to the real daemon.

An MTA passes on what the SMTP client said: a Postfix with
smtputf8_enable = no lets an 8-bit HELO through, and any MTA passes odd
MAIL FROM, RCPT and header bytes. Here the test is the MTA, so the bytes
reach libmilter and pymilter exactly as sent, which the callback tests
(under pymilter's TestCtx) cannot show. Whatever arrives: the daemon answers
every event, keeps serving, and what it adds is single, printable fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from helpers.dnszone import Zone
from helpers.milterclient import Endpoint, MilterSession
from helpers.milterdaemon import MilterDaemon, serving
from helpers.milterwire import (
    SMFIC_BODYEOB,
    SMFIC_CONNECT,
    SMFIC_DATA,
    SMFIC_HEADER,
    SMFIC_HELO,
    SMFIC_MAIL,
    SMFIC_RCPT,
    Reply,
    Verdict,
    connect_data,
)

pytestmark = pytest.mark.integration

ZONE = """\
$TTL 300
$ORIGIN example.net.
@    TXT "v=spf1 ip4:192.0.2.0/24 -all"
"""


@pytest.fixture(scope="module")
def daemon() -> Iterator[MilterDaemon]:
    with serving(
        "spf-milter-raw-",
        Zone.from_text(ZONE),
        config="authserv_id: mx.test.example\n",
        policy="",
    ) as daemon:
        yield daemon


async def _message(
    daemon: MilterDaemon, helo: bytes, sender: bytes, header: bytes
) -> list[Reply | None]:
    session = await MilterSession.open(Endpoint(path=str(daemon.socket_path)))
    try:
        await session.negotiate()
        replies = [
            await session.event(
                SMFIC_CONNECT, connect_data("[192.0.2.10]", "192.0.2.10", 25), []
            ),
            await session.event(SMFIC_HELO, helo + b"\0", []),
            await session.event(SMFIC_MAIL, b"<" + sender + b">\0", []),
            await session.event(SMFIC_RCPT, b"<u@dest.example>\0", []),
            await session.event(SMFIC_DATA, b"", [("i", "QUEUE1")]),
            await session.event(SMFIC_HEADER, b"Subject\0" + header + b"\0", []),
            await session.event(
                SMFIC_HEADER, b"Authentication-Results\0" + header + b"\0", []
            ),
            await session.event(SMFIC_BODYEOB, b"", []),
        ]
    finally:
        session.quit()
    return replies


HOSTILE = [
    pytest.param(b"\xff\xfe.example.net", b"a@example.net", b"x", id="8-bit-helo"),
    pytest.param(b"mail.example.net", b"\xff@example.net", b"\xc3(", id="8-bit-sender"),
    pytest.param(
        b"a\r\nX-Injected: 1",
        b"a\r\nb@example.net",
        b"mx.test.example; spf=pass",
        id="crlf",
    ),
    pytest.param(b"x" * 4000, b"y" * 4000 + b"@example.net", b"z" * 20000, id="long"),
    pytest.param(b"", b"", b"", id="empty"),
    pytest.param(b"[192.0.2.10]", b"<>", b"\x00", id="literal-and-brackets"),
]


@pytest.mark.parametrize(("helo", "sender", "header"), HOSTILE)
def test_any_bytes_get_answers_and_clean_fields(
    daemon: MilterDaemon, helo: bytes, sender: bytes, header: bytes
) -> None:
    replies = asyncio.run(_message(daemon, helo, sender, header))
    assert all(r is None or r.verdict is Verdict.CONTINUE for r in replies), replies
    final = replies[-1]
    assert final is not None
    assert final.verdict in (Verdict.CONTINUE, Verdict.ACCEPT), final
    for change in final.modifications:
        if change.kind in ("addheader", "insheader"):
            assert "\r" not in change.value
            assert all(part.startswith("\t") for part in change.value.split("\n")[1:])
            assert all(" " <= c <= "~" or c in "\n\t" for c in change.value)
    assert daemon.process is not None
    assert daemon.process.poll() is None
    assert "Traceback" not in daemon.log()
