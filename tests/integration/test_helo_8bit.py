"""An 8-bit HELO name through a real Postfix (smtputf8_enable = no).

Such a Postfix passes the HELO bytes on as they came; pymilter decodes them
strictly as UTF-8 and, when it cannot, never calls the helo callback. The
name is still the client's HELO identity: not a valid domain, so its SPF
result is ``none`` (RFC 7208 §4.3), which the log says and the policy's
HELO rules see; the null sender is checked as postmaster@ that name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from helpers.dnszone import Zone
from helpers.headerparse import clauses, parse_auth_results, parse_received_spf
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
    connect_data,
)
from mta.delivery import Delivery
from mta.milterprocess import MilterSocket
from mta.postfix import PostfixInstance
from mta.smtp import SendResult, send

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

AUTHSERV_ID = "mx.test.example"
SOURCE = "127.0.0.10"  # example.net's
HELO = b"forged.example\xff"
ZONE = """\
$TTL 300
$ORIGIN example.net.
@  TXT "v=spf1 ip4:127.0.0.10/31 -all"
"""
CONFIG = f"""\
authserv_id: {AUTHSERV_ID}
trusted_networks:
  - 127.0.0.1/32
"""
POLICY = """\
domains:
  strict.test:
    helo:
      fail: reject
      none: reject
"""


@pytest.fixture(scope="module")
def spf_daemon() -> Iterator[MilterDaemon]:
    with serving(
        "spf-milter-helo-", Zone.from_text(ZONE), config=CONFIG, policy=POLICY
    ) as daemon:
        yield daemon


@pytest.fixture
def mta(postfix: PostfixInstance, spf_daemon: MilterDaemon) -> PostfixInstance:
    postfix.reset(
        milter=MilterSocket.unix(spf_daemon.socket_path).postfix,
        main_cf={"smtputf8_enable": "no"},
    )
    return postfix


def _send(mta: PostfixInstance, mail_from: str, rcpt: str) -> SendResult:
    return send(mta.port, source=SOURCE, helo=HELO, mail_from=mail_from, rcpt_to=[rcpt])


def _auth_results(delivery: Delivery) -> dict[str, tuple[str, str]]:
    (field,) = delivery.raw_fields("Authentication-Results")
    parsed = parse_auth_results(field.decode("ascii").split(":", 1)[1].strip())
    return {
        prop.split(".")[1]: (result, value)
        for _, result, _, props in clauses(parsed)
        for prop, value in props
    }


def _decision(daemon: MilterDaemon, text: str) -> str:
    log = daemon.wait_for_log(lambda log: text in log)
    (line,) = [entry for entry in log.splitlines() if text in entry]
    return line


def test_the_policys_helo_rule_sees_the_8bit_name(
    mta: PostfixInstance, spf_daemon: MilterDaemon
) -> None:
    result = _send(mta, "alice@example.net", "user@strict.test")
    assert result.helo is not None
    assert result.helo.ok, result  # Postfix lets the name through
    assert result.rcpt["user@strict.test"].code == 550, result
    line = _decision(spf_daemon, 'rcpt_domain="strict.test"')
    assert 'helo="forged.example\\xff"' in line
    assert "helo_result=none" in line
    assert "mailfrom_result=pass" in line
    assert "is not UTF-8" in spf_daemon.log()


def test_the_null_sender_is_postmaster_at_the_8bit_name(
    mta: PostfixInstance, spf_daemon: MilterDaemon
) -> None:
    result = _send(mta, "", "user@dest.test")
    assert result.accepted, result
    delivery = mta.wait_for_delivery(message_id=result.message_id)
    assert _auth_results(delivery) == {
        "mailfrom": ("none", "postmaster@forged.example?"),
        "helo": ("none", "forged.example?"),
    }
    (field,) = delivery.raw_fields("Received-SPF")
    received = parse_received_spf(field.decode("ascii").split(":", 1)[1].strip())
    assert received.result == "none"
    assert received.pairs["envelope-from"] == "postmaster@forged.example?"
    assert "Traceback" not in spf_daemon.log()


async def _header_with_an_8bit_name(daemon: MilterDaemon) -> Reply | None:
    session = await MilterSession.open(Endpoint(path=str(daemon.socket_path)))
    try:
        await session.negotiate()
        data = connect_data("[127.0.0.10]", SOURCE, 25)
        await session.event(SMFIC_CONNECT, data, [])
        await session.event(SMFIC_HELO, b"example.net\0", [])
        await session.event(SMFIC_MAIL, b"<alice@example.net>\0", [])
        await session.event(SMFIC_RCPT, b"<user@dest.test>\0", [])
        await session.event(SMFIC_DATA, b"", [("i", "QUEUE8")])
        await session.event(SMFIC_HEADER, b"X-\xff\0value\0", [])
        return await session.event(SMFIC_BODYEOB, b"", [])
    finally:
        session.quit()


def test_an_8bit_header_name_is_not_taken_for_a_helo(
    spf_daemon: MilterDaemon,
) -> None:
    reply = asyncio.run(_header_with_an_8bit_name(spf_daemon))
    assert reply is not None
    (value,) = [m.value for m in reply.modifications if m.name == "Received-SPF"]
    assert "helo=example.net;" in value
    line = _decision(spf_daemon, "QUEUE8")
    assert 'helo="example.net"' in line
    assert "helo_result=pass" in line
