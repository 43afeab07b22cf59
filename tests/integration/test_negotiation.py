"""What the real daemon negotiates with an MTA, read off the milter protocol.

A client speaking protocol 6 as Postfix does (tests/helpers/milterclient.py) opens
the daemon's socket and reads its SMFIC_OPTNEG answer: the steps it
declines or answers without a reply, and the macros it asks for. If the
negotiation fails, libmilter silently falls back to "everything": the MTA
then sends every event and waits for every reply, and no macro is asked
for; only this test would notice.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import pytest

from helpers.milterclient import Endpoint, MilterSession
from helpers.milterdaemon import MilterDaemon
from helpers.milterwire import Negotiated, Stage, Step
from mta.common import make_public_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def daemon() -> Iterator[MilterDaemon]:
    work_dir = make_public_dir("spf-milter-negotiation-")
    milter = MilterDaemon(
        work_dir, config="", policy="", nameserver="127.0.0.1:9", unix_socket=True
    )
    try:
        with milter:
            yield milter
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _negotiate(daemon: MilterDaemon) -> Negotiated:
    async def run() -> Negotiated:
        session = await MilterSession.open(Endpoint(path=str(daemon.socket_path)))
        try:
            return await session.negotiate()
        finally:
            session.quit()

    return asyncio.run(run())


def test_unused_steps_are_declined_and_headers_need_no_reply(
    daemon: MilterDaemon,
) -> None:
    steps = _negotiate(daemon).steps
    for declined in (Step.NOBODY, Step.NOUNKNOWN):
        assert steps & declined, f"{declined!r} not negotiated: {steps!r}"
    assert steps & Step.NR_HDR
    # The end of the header is kept, with no reply: without it libmilter
    # never reaches the end of a message that has no header field
    # (test_headerless.py).
    assert not steps & Step.NOEOH
    assert steps & Step.NR_EOH
    # DATA is kept on purpose: its reply acks the MTA at once (no Nagle stall).
    assert not steps & Step.NODATA


def test_the_macros_the_milter_reads_are_asked_for(daemon: MilterDaemon) -> None:
    lists = _negotiate(daemon).macro_lists
    assert set(lists[Stage.CONNECT]) == {"j", "{daemon_name}", "{client_addr}"}
    assert set(lists[Stage.ENVFROM]) == {"i", "{auth_authen}"}
    assert lists[Stage.ENVRCPT] == ("i",)
    assert lists[Stage.EOM] == ("i",)
