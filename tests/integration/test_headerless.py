"""A message with no header field at all still gets its end-of-message answer.

A remote client may send DATA with an empty header section: Postfix then
hands the milter no header field (its own Received: is not shown to
milters, and it adds no Message-ID, Date or From for a remote client). The
MTA goes from DATA to the end of the header, or, if the milter declined
that step, straight to the end of the message. libmilter's state machine
cannot go from DATA to the end of the message without passing the header
state, which it skips only for a milter that declined header fields: a
milter that reads header fields but declines the end of the header never
sees that message's end (libmilter calls abort and drops the command
unanswered), and the MTA waits until its milter timeout, then tempfails.
So every such message from anyone would stall the MTA and never be
accepted. The daemon must keep the end-of-header step (with no reply).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from typing import Final

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.headerparse import parse_received_spf
from helpers.milterclient import Endpoint, MilterSession
from helpers.milterdaemon import MilterDaemon
from helpers.milterwire import (
    SMFIC_BODY,
    SMFIC_BODYEOB,
    SMFIC_CONNECT,
    SMFIC_DATA,
    SMFIC_EOH,
    SMFIC_HELO,
    SMFIC_MAIL,
    SMFIC_RCPT,
    Reply,
    Verdict,
    connect_data,
)
from mta.common import make_public_dir
from mta.milterprocess import MilterSocket
from mta.postfix import PostfixInstance
from mta.smtp import send

pytestmark = pytest.mark.integration

AUTHSERV_ID: Final = "mx.test.example"
CLIENT_IP: Final = "192.0.2.10"  # claimed with XCLIENT: a remote client
# Postfix adds Message-ID, Date and From to a message from a client in
# local_header_rewrite_clients (its own interfaces, 127.0.0.1 here), judged
# by the real connection, not by XCLIENT: the session comes from another
# loopback address, as a remote client's would.
SOURCE: Final = "127.0.0.10"
ZONE: Final = """\
$TTL 300
$ORIGIN example.net.
@    TXT "v=spf1 ip4:192.0.2.0/24 -all"
mail TXT "v=spf1 ip4:192.0.2.0/24 -all"
"""
# Well above the milliseconds a healthy answer takes, and below the SMTP
# client's 30 s: a message the milter leaves unanswered gets Postfix's own
# tempfail (milter_default_action) rather than a client timeout.
MILTER_CONTENT_TIMEOUT: Final = "20s"
REPLY_WAIT: Final = 30.0  # seconds; an upper bound: a busy machine is slow
OUR_FIELDS: Final = ("Received-SPF", "Authentication-Results")


@pytest.fixture(scope="module")
def daemon() -> Iterator[MilterDaemon]:
    work_dir = make_public_dir("spf-milter-headerless-")
    with DnsServer(Zone.from_text(ZONE)) as dns:
        milter = MilterDaemon(
            work_dir,
            config=f"authserv_id: {AUTHSERV_ID}\n",
            policy="",
            nameserver=f"127.0.0.1:{dns.port}",
            unix_socket=True,
        )
        try:
            with milter:
                yield milter
            assert "Traceback" not in milter.log(), milter.log()
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)


async def _headerless_message(daemon: MilterDaemon, body: bytes) -> Reply | None:
    """One message with no header field, sent as Postfix sends it."""
    session = await MilterSession.open(Endpoint(path=str(daemon.socket_path)))
    queue_id = [("i", "NOHEADER1")]
    try:
        await session.negotiate()
        data = connect_data(f"[{CLIENT_IP}]", CLIENT_IP, 25)
        await session.event(SMFIC_CONNECT, data, [])
        await session.event(SMFIC_HELO, b"mail.example.net\0", [])
        await session.event(SMFIC_MAIL, b"<a@example.net>\0", queue_id)
        await session.event(SMFIC_RCPT, b"<u@dest.example>\0", queue_id)
        await session.event(SMFIC_DATA, b"", queue_id)
        await session.event(SMFIC_EOH, b"", queue_id)  # skipped if declined
        if body:
            await session.event(SMFIC_BODY, body, queue_id)  # skipped if declined
        end = session.event(SMFIC_BODYEOB, b"", queue_id)
        return await asyncio.wait_for(end, REPLY_WAIT)
    finally:
        session.quit()


@pytest.mark.parametrize("body", [b"Body text.\r\n", b""], ids=["body", "no-body"])
def test_the_end_of_a_headerless_message_is_answered(
    daemon: MilterDaemon, body: bytes
) -> None:
    reply = asyncio.run(_headerless_message(daemon, body))
    assert reply is not None
    assert reply.verdict is Verdict.CONTINUE, reply
    added = {change.name: change.value for change in reply.modifications}
    assert set(added) == set(OUR_FIELDS), reply.modifications
    assert parse_received_spf(added["Received-SPF"]).result == "pass"


@pytest.fixture
def wired_postfix(
    postfix_session: PostfixInstance, daemon: MilterDaemon
) -> PostfixInstance:
    postfix_session.reset(
        milter=MilterSocket.unix(daemon.socket_path).postfix,
        main_cf={"milter_content_timeout": MILTER_CONTENT_TIMEOUT},
    )
    return postfix_session


@pytest.mark.postfix
@pytest.mark.parametrize("body", ["Body text.\n", ""], ids=["body", "no-body"])
def test_postfix_delivers_a_headerless_message_with_our_fields(
    wired_postfix: PostfixInstance, body: str
) -> None:
    result = send(
        wired_postfix.port,
        source=SOURCE,
        client_ip=CLIENT_IP,
        helo="mail.example.net",
        mail_from="a@example.net",
        rcpt_to=["user@dest.test"],
        headers=[],
        add_message_id=False,
        body=body,
    )
    assert result.accepted, (result, wired_postfix.maillog_tail())
    queue_id = result.queue_id
    delivery = wired_postfix.wait_for_delivery(lambda d: d.queue_id == queue_id)
    names = [
        line.split(b":", 1)[0].decode()
        for line in delivery.raw_header.split(b"\n")
        if line and line[:1] not in b" \t"
    ]
    # Postfix's Received: (never shown to milters), ours, and the sink's
    # Return-Path (added at delivery): the milter saw no header field at all.
    assert sorted(names) == sorted(["Return-Path", "Received", *OUR_FIELDS]), names
    (field,) = delivery.raw_fields("Received-SPF")
    value = field.decode("ascii").split(":", 1)[1].strip()
    assert parse_received_spf(value).result == "pass"
