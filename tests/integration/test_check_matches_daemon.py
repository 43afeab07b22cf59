"""``spf-milter check --config`` tells what the daemon does, null sender included.

The same configuration, policy and loopback DNS zone; each transaction is
run once through the real daemon over the milter protocol and once through
``spf-milter check --config ... --json``. The SMTP reply to the recipient
and the header fields added must be the same, field for field.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from helpers.dnszone import Zone
from helpers.milterclient import Endpoint, MilterSession
from helpers.milterdaemon import MilterDaemon, console_script, serving
from helpers.milterwire import (
    SMFIC_BODYEOB,
    SMFIC_CONNECT,
    SMFIC_DATA,
    SMFIC_HEADER,
    SMFIC_HELO,
    SMFIC_MAIL,
    SMFIC_RCPT,
    Verdict,
    connect_data,
)

pytestmark = pytest.mark.integration

ZONE = """\
$TTL 300
$ORIGIN example.net.
@         TXT "v=spf1 ip4:192.0.2.0/24 -all"
mail      A   192.0.2.10
mail      TXT "v=spf1 a -all"
soft      TXT "v=spf1 ~all"
nospf     A   192.0.2.11
"""
CONFIG = "authserv_id: mx.test.example\n"
POLICY = """\
domains:
  strict.example:
    mailfrom:
      softfail: reject
    helo:
      fail: defer
"""
PASSING, FAILING = "192.0.2.10", "203.0.113.9"
CHECK_TIMEOUT = 60.0  # seconds: generous for a busy machine


@dataclass(frozen=True)
class Seen:
    """What the MTA (or an administrator) is told about one transaction."""

    verdict: str  # accept, reject or defer: the answer to RCPT TO
    reply: str | None
    headers: tuple[str, ...]  # the fields added, top first (accepted only)


@pytest.fixture(scope="module")
def daemon() -> Iterator[MilterDaemon]:
    with serving(
        "spf-milter-same-", Zone.from_text(ZONE), config=CONFIG, policy=POLICY
    ) as daemon:
        yield daemon


async def _through_daemon(
    daemon: MilterDaemon, client: str, helo: str, sender: str, rcpt: str
) -> Seen:
    session = await MilterSession.open(Endpoint(path=str(daemon.socket_path)))
    try:
        await session.negotiate()
        await session.event(SMFIC_CONNECT, connect_data("client", client, 25), [])
        await session.event(SMFIC_HELO, helo.encode() + b"\0", [])
        await session.event(SMFIC_MAIL, f"<{sender}>".encode() + b"\0", [])
        answer = await session.event(SMFIC_RCPT, f"<{rcpt}>".encode() + b"\0", [])
        assert answer is not None
        if answer.verdict is Verdict.REJECT:
            return Seen("reject", answer.text, ())
        if answer.verdict is Verdict.TEMPFAIL:
            return Seen("defer", answer.text, ())
        await session.event(SMFIC_DATA, b"", [("i", "QUEUE1")])
        await session.event(SMFIC_HEADER, b"Subject\0test\0", [])
        final = await session.event(SMFIC_BODYEOB, b"", [])
    finally:
        session.quit()
    assert final is not None
    inserted = [
        f"{change.name}: {change.value}"
        for change in final.modifications
        if change.kind in ("insheader", "addheader")
    ]
    # Each field is inserted at the top: the last one inserted ends up first.
    return Seen("accept", None, tuple(reversed(inserted)))


def _through_check(
    daemon: MilterDaemon, client: str, helo: str, sender: str, rcpt: str
) -> Seen:
    done = subprocess.run(
        [
            console_script(),
            "check",
            "--config",
            str(daemon.config_path),
            *("--ip", client, "--helo", helo, "--sender", sender, "--rcpt", rcpt),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    action = report["action"]
    if action in ("reject", "defer"):
        return Seen(action, report["reply"], ())
    assert action in ("accept", "tag"), report
    return Seen("accept", None, tuple(report["headers"]))


CASES = [
    pytest.param(
        PASSING, "mail.example.net", "a@example.net", "b@x.example", id="pass"
    ),
    pytest.param(
        FAILING, "mail.example.net", "a@example.net", "b@x.example", id="fail"
    ),
    pytest.param(PASSING, "mail.example.net", "", "b@x.example", id="null-sender-pass"),
    pytest.param(FAILING, "mail.example.net", "", "b@x.example", id="null-sender-fail"),
    pytest.param(
        FAILING, "nospf.example.net", "", "b@x.example", id="null-sender-none"
    ),
    pytest.param(
        FAILING, "mail.example.net", "", "b@strict.example", id="null-helo-rule"
    ),
    pytest.param(
        FAILING,
        "[203.0.113.9]",
        "a@soft.example.net",
        "b@strict.example",
        id="softfail-rule",
    ),
    pytest.param(
        "192.0.2.12",
        "mail.example.net",
        "a@example.net",
        "b@strict.example",
        id="helo-fail-rule",
    ),
    pytest.param(
        "::ffff:192.0.2.10",
        "mail.example.net",
        "a@example.net",
        "b@x.example",
        id="ipv4-mapped",
    ),
]


@pytest.mark.parametrize(("client", "helo", "sender", "rcpt"), CASES)
def test_check_prints_what_the_daemon_does(
    daemon: MilterDaemon, client: str, helo: str, sender: str, rcpt: str
) -> None:
    by_daemon = asyncio.run(_through_daemon(daemon, client, helo, sender, rcpt))
    by_check = _through_check(daemon, client, helo, sender, rcpt)
    assert by_check == by_daemon
    if by_daemon.verdict == "accept":
        names = [field.split(":", 1)[0] for field in by_daemon.headers]
        assert names == ["Authentication-Results", "Received-SPF"]


def test_the_cases_cover_every_answer(daemon: MilterDaemon) -> None:
    """The comparison above is not vacuous: accept, reject and defer all occur."""
    verdicts = {
        asyncio.run(_through_daemon(daemon, *case.values)).verdict  # type: ignore[arg-type]
        for case in CASES
    }
    assert verdicts == {"accept", "reject", "defer"}
