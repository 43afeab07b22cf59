"""Stopping the real daemon: SIGTERM and Ctrl-C end it at once, not at
libmilter's next 5 s listener poll, and a transaction in progress is
answered to its end first."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.milterclient import Endpoint, MilterSession
from helpers.milterdaemon import MilterDaemon
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

# libmilter's listener looks for a stop request every 5 s (MI_CHK_TIME);
# a stop that waits for it takes 5 s or more, one that wakes it well
# under a second on a quiet machine (0.1 to 0.2 s measured). The bound leaves
# room for a busy machine and still fails a stop that waits for the poll.
STOP_BOUND = 4.0
WAIT = 10.0  # seconds: bound of every wait for the daemon or the DNS

ZONE = """\
$TTL 300
$ORIGIN example.net.
@     TXT "v=spf1 ip4:192.0.2.0/24 -all"
lazy  TXT "v=spf1 ip4:192.0.2.0/24 -all"
;! delay lazy 0.6
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(Zone.from_text(ZONE)) as server:
        yield server


async def _negotiate(endpoint: Endpoint) -> None:
    session = await MilterSession.open(endpoint)
    try:
        await session.negotiate()
    finally:
        session.quit()


def _seconds_to_exit(daemon: MilterDaemon, signum: int) -> float:
    """Serve one MTA connection, so that libmilter's listener runs; signal."""
    process = daemon.process
    assert process is not None
    asyncio.run(_negotiate(Endpoint.parse(daemon.milter_spec)))
    started = time.monotonic()
    process.send_signal(signum)
    process.wait(WAIT)
    return time.monotonic() - started


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
@pytest.mark.parametrize("unix_socket", [False, True], ids=["inet", "unix"])
def test_an_idle_daemon_stops_at_once(
    tmp_path: Path, dns: DnsServer, signum: int, unix_socket: bool
) -> None:
    daemon = MilterDaemon(
        tmp_path,
        config="",
        policy="",
        nameserver=f"127.0.0.1:{dns.port}",
        unix_socket=unix_socket,
    )
    with daemon:
        process = daemon.process
        assert process is not None
        elapsed = _seconds_to_exit(daemon, signum)
        assert process.returncode == 0, daemon.log()
    assert elapsed < STOP_BOUND, f"stopped in {elapsed:.2f} s"
    log = daemon.log()
    assert f"{signal.Signals(signum).name}: stopping" in log
    assert log.rstrip().endswith("stopped"), log


async def _transaction_across_a_stop(
    daemon: MilterDaemon, dns: DnsServer
) -> tuple[Reply | None, Reply | None]:
    """Start a RCPT whose check waits for the DNS; SIGTERM; finish the message."""
    session = await MilterSession.open(Endpoint(host="127.0.0.1", port=daemon.port))
    try:
        await session.negotiate()
        ip = "192.0.2.10"
        await session.event(SMFIC_CONNECT, connect_data("[192.0.2.10]", ip, 25), [])
        await session.event(SMFIC_HELO, b"mail.example.net\0", [])
        dns.clear_queries()
        await session.event(SMFIC_MAIL, b"<a@lazy.example.net>\0", [])
        rcpt = asyncio.ensure_future(session.event(SMFIC_RCPT, b"<u@dest>\0", []))
        await _until(lambda: any(q.name == "lazy.example.net" for q in dns.queries))
        daemon.signal(signal.SIGTERM)
        rcpt_reply = await asyncio.wait_for(rcpt, WAIT)
        await session.event(SMFIC_DATA, b"", [("i", "QUEUE1")])
        await session.event(SMFIC_HEADER, b"Subject\0test\0", [])
        eom_reply = await asyncio.wait_for(session.event(SMFIC_BODYEOB, b"", []), WAIT)
    finally:
        session.quit()
    return rcpt_reply, eom_reply


async def _until(condition: object) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_transaction_in_progress_is_answered_to_its_end(
    tmp_path: Path, dns: DnsServer
) -> None:
    daemon = MilterDaemon(
        tmp_path, config="", policy="", nameserver=f"127.0.0.1:{dns.port}"
    )
    with daemon:
        process = daemon.process
        assert process is not None
        rcpt, eom = asyncio.run(_transaction_across_a_stop(daemon, dns))
        process.wait(WAIT)
    assert rcpt is not None
    assert rcpt.verdict is Verdict.CONTINUE, daemon.log()
    assert eom is not None
    assert eom.verdict is Verdict.CONTINUE
    added = [change.name for change in eom.modifications]
    assert "Received-SPF" in added, daemon.log()
    # pass, or temperror if the machine is too busy for the 1 s DNS timeout
    assert "mailfrom_result=" in daemon.log()
    assert process.returncode == 0
