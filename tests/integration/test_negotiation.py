"""What the real daemon negotiates with an MTA, read off the milter protocol.

A client speaking protocol 6 as Postfix does (tests/helpers/milterclient.py) opens
the daemon's socket and reads its SMFIC_OPTNEG answer: the steps it
declines or answers without a reply, and the macros it asks for. If the
negotiation fails, libmilter silently falls back to "everything": the MTA
then sends every event and waits for every reply, and no macro is asked
for; only this test would notice. Then one whole message: how many times
the MTA has to wait for the milter, and that the milter sends nothing the
MTA did not wait for (a stray answer would be read as the next one's).
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
    SMFIC_HEADER,
    SMFIC_HELO,
    SMFIC_MAIL,
    SMFIC_RCPT,
    Negotiated,
    Stage,
    Step,
    Verdict,
    connect_data,
)
from mta.common import make_public_dir

pytestmark = pytest.mark.integration

ZONE: Final = """\
$TTL 300
$ORIGIN example.net.
@    TXT "v=spf1 ip4:192.0.2.0/24 -all"
mail TXT "v=spf1 ip4:192.0.2.0/24 -all"
"""
REPLY_WAIT: Final = 30.0  # seconds; an upper bound: a busy machine is slow
STRAY_WAIT: Final = 0.3  # seconds for a stray answer to arrive, if one is sent
# Nothing is decided before RCPT: the MTA need not wait for these steps.
NO_REPLY: Final = (Step.NR_CONN, Step.NR_HELO, Step.NR_MAIL, Step.NR_HDR, Step.NR_EOH)


@pytest.fixture(scope="module", params=["unix", "inet"])
def daemon(request: pytest.FixtureRequest) -> Iterator[MilterDaemon]:
    work_dir = make_public_dir("spf-milter-negotiation-")
    try:
        with DnsServer(Zone.from_text(ZONE)) as dns:
            milter = MilterDaemon(
                work_dir,
                config="trusted_networks: []\n",
                policy="",
                nameserver=f"127.0.0.1:{dns.port}",
                unix_socket=request.param == "unix",
            )
            with milter:
                yield milter
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _endpoint(daemon: MilterDaemon) -> Endpoint:
    if daemon.milter_spec.startswith("unix:"):
        return Endpoint(path=str(daemon.socket_path))
    return Endpoint(host="127.0.0.1", port=daemon.port)


def _negotiate(daemon: MilterDaemon) -> Negotiated:
    async def run() -> Negotiated:
        session = await MilterSession.open(_endpoint(daemon))
        try:
            return await session.negotiate()
        finally:
            session.quit()

    return asyncio.run(run())


def test_only_recipients_and_the_end_of_the_message_are_waited_for(
    daemon: MilterDaemon,
) -> None:
    steps = _negotiate(daemon).steps
    for declined in (Step.NOBODY, Step.NOUNKNOWN):
        assert steps & declined, f"{declined!r} not negotiated: {steps!r}"
    for no_reply in NO_REPLY:
        assert steps & no_reply, f"{no_reply!r} not negotiated: {steps!r}"
    # The end of the header is kept, with no reply: without it libmilter
    # never reaches the end of a message that has no header field
    # (test_headerless.py).
    assert not steps & Step.NOEOH
    assert not steps & (Step.NR_RCPT | Step.NORCPT)


def test_data_is_waited_for_over_tcp_only(daemon: MilterDaemon) -> None:
    """Over TCP its reply acks the MTA at once (no Nagle stall on the headers)."""
    steps = _negotiate(daemon).steps
    over_tcp = daemon.milter_spec.startswith("inet:")
    assert bool(steps & Step.NODATA) is not over_tcp, steps


def test_the_macros_the_milter_reads_are_asked_for(daemon: MilterDaemon) -> None:
    lists = _negotiate(daemon).macro_lists
    assert lists[Stage.CONNECT] == ("{client_addr}",)
    assert set(lists[Stage.ENVFROM]) == {"i", "{auth_authen}"}
    assert lists[Stage.ENVRCPT] == ("i",)
    assert lists[Stage.EOM] == ("i",)


async def _one_message(
    daemon: MilterDaemon, helo: bytes = b"mail.example.net"
) -> tuple[MilterSession, dict[str, str]]:
    """Send one message as Postfix does; return the session and our fields."""
    session = await MilterSession.open(_endpoint(daemon))
    queue_id = [("i", "NEGOTIATED1")]
    try:
        await session.negotiate()
        data = connect_data("[192.0.2.10]", "192.0.2.10", 25)
        for command, argument in (
            (SMFIC_CONNECT, data),
            (SMFIC_HELO, helo + b"\0"),
            (SMFIC_MAIL, b"<a@example.net>\0"),
        ):
            assert await session.event(command, argument, queue_id) is None
        for recipient in (b"<u@dest.example>\0", b"<v@dest.example>\0"):
            reply = await session.event(SMFIC_RCPT, recipient, queue_id)
            assert reply is not None
            assert reply.verdict is Verdict.CONTINUE
        await session.event(SMFIC_DATA, b"", queue_id)
        await session.event(SMFIC_HEADER, b"Subject\0hello\0", queue_id)
        await session.event(SMFIC_EOH, b"", queue_id)
        await session.event(SMFIC_BODY, b"Body.\r\n", queue_id)
        end = await asyncio.wait_for(
            session.event(SMFIC_BODYEOB, b"", queue_id), REPLY_WAIT
        )
        assert end is not None
        assert end.verdict is Verdict.CONTINUE
        assert await session.unasked(STRAY_WAIT) == 0
        added = {change.name: change.value for change in end.modifications}
        return session, added
    finally:
        session.quit()


def test_a_message_costs_one_wait_per_recipient_and_one_at_its_end(
    daemon: MilterDaemon,
) -> None:
    session, added = asyncio.run(_one_message(daemon))
    over_tcp = daemon.milter_spec.startswith("inet:")
    assert session.replies_awaited == 2 + 1 + over_tcp  # 2 RCPT, EOM (DATA)
    assert parse_received_spf(added["Received-SPF"]).result == "pass"


def test_an_undecodable_helo_gets_no_stray_answer(daemon: MilterDaemon) -> None:
    """pymilter fails before our code on an 8-bit HELO name (callbacks.py
    routes it): the MTA, which waits for no answer there, must get none."""
    session, added = asyncio.run(_one_message(daemon, b"forged.example\xff"))
    over_tcp = daemon.milter_spec.startswith("inet:")
    assert session.replies_awaited == 2 + 1 + over_tcp
    assert parse_received_spf(added["Received-SPF"]).result == "pass"
