"""Hostile records through the real daemon: the RFC's result, no freeze, no bug path.

The daemon runs with ``on_error: accept``, the setting under which an
internal error used to let a message through with its forged
Authentication-Results field. Records a zone owner can publish (a CIDR
length of 5,000 digits, a 60 kB domain-spec that made a regex backtrack,
a domain-spec of 15,000 macros) must end in the RFC's result, with the
forged field removed, and must not hold up the other connections.
"""

from __future__ import annotations

import asyncio
import time
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

CLIENT = "192.0.2.10"
FORGED = b"mx.test.example; spf=pass smtp.mailfrom=a@example.net"
# Generous: the checks take milliseconds; a 60 kB record took the old
# regex over a minute, holding the GIL, so every other connection waited.
WAIT_LIMIT = 15.0


def _zone() -> Zone:
    zone = Zone()
    zone.add_txt("good.example.net", b"v=spf1 ip4:192.0.2.0/24 -all")
    zone.add_txt("cidr.example.net", b"v=spf1 a/" + b"1" * 5000 + b" -all")
    zone.add_txt("regex.example.net", b"v=spf1 include:." + b"a" * 60_000 + b"! -all")
    zone.add_txt("macros.example.net", b"v=spf1 exists:" + b"%{d}" * 15_000 + b" -all")
    return zone


@pytest.fixture(scope="module")
def daemon() -> Iterator[MilterDaemon]:
    with serving(
        "spf-milter-records-",
        _zone(),
        config="authserv_id: mx.test.example\non_error: accept\n",
        policy="default:\n  mailfrom:\n    fail: reject\n",
    ) as daemon:
        yield daemon


async def _message(daemon: MilterDaemon, sender: bytes) -> list[Reply | None]:
    session = await MilterSession.open(Endpoint(path=str(daemon.socket_path)))
    try:
        await session.negotiate()
        return [
            await session.event(
                SMFIC_CONNECT, connect_data(f"[{CLIENT}]", CLIENT, 25), []
            ),
            await session.event(SMFIC_HELO, b"mail.good.example.net\0", []),
            await session.event(SMFIC_MAIL, b"<" + sender + b">\0", []),
            await session.event(SMFIC_RCPT, b"<u@dest.example>\0", []),
            await session.event(SMFIC_DATA, b"", [("i", "QUEUE1")]),
            await session.event(
                SMFIC_HEADER, b"Authentication-Results\0" + FORGED + b"\0", []
            ),
            await session.event(SMFIC_BODYEOB, b"", []),
        ]
    finally:
        session.quit()


@pytest.mark.parametrize(
    ("domain", "result"),
    [
        ("cidr.example.net", "permerror"),
        ("regex.example.net", "permerror"),
        ("macros.example.net", "fail"),
    ],
)
def test_a_hostile_record_gets_its_result_and_the_forgery_goes(
    daemon: MilterDaemon, domain: str, result: str
) -> None:
    sender = f"a@{domain}".encode()
    replies = asyncio.run(asyncio.wait_for(_message(daemon, sender), 4 * WAIT_LIMIT))
    rcpt, final = replies[3], replies[-1]
    if result == "fail":
        assert rcpt is not None
        assert rcpt.verdict is Verdict.REJECT
        return
    assert final is not None
    assert final.verdict in (Verdict.CONTINUE, Verdict.ACCEPT)
    kinds = {(m.kind, m.name, m.index, m.value) for m in final.modifications}
    assert ("chgheader", "Authentication-Results", 1, "") in kinds
    added = [m.value for m in final.modifications if m.kind == "insheader"]
    assert any(f"spf={result}" in value for value in added), added
    assert "Traceback" not in daemon.log()


def test_other_connections_are_answered_while_a_hostile_record_is_read(
    daemon: MilterDaemon,
) -> None:
    async def together() -> list[float]:
        async def timed(sender: bytes) -> float:
            started = time.monotonic()
            replies = await _message(daemon, sender)
            assert replies[-1] is not None
            return time.monotonic() - started

        hostile = [timed(b"b%d@regex.example.net" % n) for n in range(4)]
        good = [timed(b"a@good.example.net") for _ in range(4)]
        return await asyncio.wait_for(asyncio.gather(*hostile, *good), 120)

    assert max(asyncio.run(together())) < WAIT_LIMIT
