"""The transaction flow without pymilter: verdicts, the null sender, on_error."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.dnszone import Zone
from helpers.fakelookup import FakeLookup
from spf_milter.action import Defer, Reject
from spf_milter.config import OnError, load_all
from spf_milter.eventloop import EventLoop
from spf_milter.flow import Flow, error_verdict
from spf_milter.metrics import Metrics
from spf_milter.outcome import (
    CONTINUE,
    ERROR_REPLY,
    AcceptMessage,
    FieldRemoval,
    HeaderField,
)
from spf_milter.runner import CheckRunner
from spf_milter.service import make_settings
from spf_milter.session import Skip
from spf_milter.settings import Settings
from spf_milter.spf import Identity, SpfResult
from spf_milter.spf.address import IPAddress

CONFIG = """\
socket: inet:8894@127.0.0.1
authserv_id: mx.test.example
trusted_networks: [198.51.100.0/24]
"""
ZONE = """\
$TTL 300
$ORIGIN example.net.
@     TXT "v=spf1 ip4:192.0.2.0/24 -all"
mail  TXT "v=spf1 ip4:192.0.2.10 -all"
"""
FAILING = ipaddress.ip_address("203.0.113.9")
PASSING = ipaddress.ip_address("192.0.2.10")


@pytest.fixture(scope="module")
def loop() -> Iterator[EventLoop]:
    loop = EventLoop("test-flow")
    loop.start()
    yield loop
    loop.stop()


@pytest.fixture
def lookup() -> FakeLookup:
    return FakeLookup(Zone.from_text(ZONE))


@pytest.fixture
def settings(tmp_path: Path, lookup: FakeLookup) -> Settings:
    (tmp_path / "spf-milter.yaml").write_text(CONFIG)
    (tmp_path / "policy.yaml").write_text("")
    configuration = load_all(tmp_path / "spf-milter.yaml")
    return make_settings(configuration, lookup)


def _flow(settings: Settings, loop: EventLoop, client: IPAddress) -> Flow:
    return Flow(settings, CheckRunner(loop), Metrics(), 1, (client, "client"))


def test_the_client_address_is_normalised_once_at_connect(
    settings: Settings, loop: EventLoop
) -> None:
    flow = _flow(settings, loop, ipaddress.ip_address("::ffff:198.51.100.7"))
    assert flow.conn.client_ip == ipaddress.ip_address("198.51.100.7")
    assert flow.conn.skip is Skip.TRUSTED  # the trusted network is IPv4


def test_the_null_sender_shares_the_helo_check(
    settings: Settings, loop: EventLoop, lookup: FakeLookup
) -> None:
    flow = _flow(settings, loop, PASSING)
    flow.hello("mail.example.net")
    flow.mail_from("<>")
    helo, mailfrom = flow.checks()
    assert lookup.queries == [("TXT", "mail.example.net")]  # asked once
    assert helo is not None
    assert mailfrom is not None
    assert helo.identity is Identity.HELO
    assert mailfrom.identity is Identity.MAILFROM
    assert mailfrom.sender == "postmaster@mail.example.net"
    assert mailfrom.result == helo.result


def test_a_failing_sender_is_refused_with_a_5xx_verdict(
    settings: Settings, loop: EventLoop
) -> None:
    flow = _flow(settings, loop, FAILING)
    flow.hello("mail.example.net")
    flow.mail_from("<a@example.net>")
    verdict = flow.recipient("<b@example.com>")
    assert isinstance(verdict, Reject)
    assert verdict.reply.code == 550
    # Until the MTA is told, an internal error answers the refusal.
    assert error_verdict(flow, "envrcpt", OnError.TEMPFAIL) == verdict
    assert error_verdict(flow, "envrcpt", OnError.TEMPFAIL) == Defer(ERROR_REPLY)


def test_the_end_of_a_message_removes_client_fields_and_adds_ours(
    settings: Settings, loop: EventLoop
) -> None:
    flow = _flow(settings, loop, PASSING)
    flow.hello("mail.example.net")
    flow.mail_from("<a@example.net>")
    assert flow.recipient("<b@example.com>") == CONTINUE
    flow.header("Received-SPF", "pass (the client says)")
    flow.header("Authentication-Results", "mx.test.example; spf=pass")
    flow.header("Authentication-Results", "other.example; spf=fail")
    flow.header("Authentication-Results", "mx.test.example; spf=pass")
    edits = flow.end_of_message()
    assert edits.remove == (
        FieldRemoval("Authentication-Results", 3),
        FieldRemoval("Authentication-Results", 1),
        FieldRemoval("Received-SPF", 1),
    )
    assert [field.name for field in edits.add] == [
        "Authentication-Results",
        "Received-SPF",
    ]
    assert all(isinstance(field, HeaderField) for field in edits.add)
    assert edits.add[1].value.startswith("pass ")
    # Until the edits are made, on_error: accept must not pass the forgery.
    assert error_verdict(flow, "eom", OnError.ACCEPT) == Defer(ERROR_REPLY)
    flow.end_transaction()
    assert not flow.in_transaction


def test_on_error_accept_steps_aside_only_where_nothing_forged_remains(
    settings: Settings, loop: EventLoop
) -> None:
    flow = _flow(settings, loop, PASSING)
    flow.hello("mail.example.net")
    flow.mail_from("<a@example.net>")
    assert error_verdict(flow, "envfrom", OnError.ACCEPT) == CONTINUE
    assert error_verdict(flow, "eom", OnError.ACCEPT) == AcceptMessage()
    assert error_verdict(flow, "header", OnError.ACCEPT) == Defer(ERROR_REPLY)
    assert error_verdict(None, "connect", OnError.ACCEPT) == CONTINUE
    assert error_verdict(None, "header", OnError.ACCEPT) == Defer(ERROR_REPLY)


def test_a_check_past_the_wait_limit_is_a_temperror(
    settings: Settings, loop: EventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = Zone.from_text(ZONE + 'slow  TXT "v=spf1 -all"\n;! delay slow 30\n')
    slow = dataclasses.replace(settings, lookup=FakeLookup(zone))
    monkeypatch.setattr(Settings, "wait_limit", property(lambda self: 0.2))
    flow = _flow(slow, loop, PASSING)
    flow.hello("mail.example.net")
    flow.mail_from("<a@slow.example.net>")
    _, mailfrom = flow.checks()
    assert mailfrom is not None
    assert mailfrom.result.result is SpfResult.TEMPERROR
    assert mailfrom.result.problem == "no result within 0.2 s"
    flow.close()
