"""Internal errors: what ``on_error`` may skip, and what no error can skip.

Text from the DNS never makes an internal error: it ends as the RFC's
result. A real bug (injected here) is answered with ``on_error``; with
``accept`` the milter steps aside for that one step only, so the end of
the message still removes forged Authentication-Results fields, a refusal
already decided stands, and a message whose header fields could not be
checked for forgeries is deferred rather than passed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest

from helpers.dnszone import Zone
from helpers.harness import MilterHarness
from spf_milter.config import OnError

CONFIG = """\
socket: inet:8894@127.0.0.1
authserv_id: mx.test.example
on_error: accept
"""
POLICY = "default:\n  mailfrom:\n    fail: reject\n"
FORGED = ("Authentication-Results", "mx.test.example; spf=pass")
PASSING_CLIENT = "192.0.2.10"
FAILING_CLIENT = "203.0.113.5"


def _zone() -> Zone:
    zone = Zone()
    zone.add_txt("example.net", b"v=spf1 ip4:192.0.2.0/24 -all")
    digits = b"1" * 5000  # int() refuses more than 4,300 digits
    zone.add_txt("cidr.example.net", b"v=spf1 a/" + digits + b" -all")
    zone.add_txt("macro.example.net", b"v=spf1 exists:%{d" + digits + b"}.x -all")
    return zone


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilterHarness]:
    directory: Path = tmp_path_factory.mktemp("errors")
    (directory / "spf-milter.yaml").write_text(CONFIG)
    (directory / "policy.yaml").write_text(POLICY)
    harness = MilterHarness(directory / "spf-milter.yaml", _zone())
    yield harness
    harness.close()


@pytest.mark.parametrize(
    ("domain", "result", "reply"),
    [
        # §12: a CIDR length past /32 is a syntax error.
        ("cidr.example.net", "permerror", Milter.CONTINUE),
        # §7.3: a digit count past the labels keeps them all; then -all.
        ("macro.example.net", "fail", Milter.REJECT),
    ],
)
@pytest.mark.parametrize("on_error", [OnError.ACCEPT, OnError.TEMPFAIL])
def test_a_number_too_long_for_int_gives_the_rfc_result_not_an_internal_error(
    harness: MilterHarness, domain: str, result: str, reply: int, on_error: OnError
) -> None:
    harness.with_settings(on_error=on_error)
    session = harness.session(
        client_ip=FAILING_CLIENT, mail_from=f"a@{domain}", headers=[FORGED]
    )
    harness.with_settings(on_error=OnError.ACCEPT)
    assert session.rcpt_replies[0][0] == reply
    assert f"spf={result}" in session.added["Authentication-Results"]
    assert session.ctx.changed == [("Authentication-Results", 1, "")]


def test_accept_steps_aside_for_the_recipient_only(
    harness: MilterHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONTINUE, not ACCEPT: the MTA still calls eom, which removes forgeries."""
    calls = iter([1 / 1, None])

    def broken_once(*args: object) -> object:
        if next(calls) is not None:
            raise ZeroDivisionError("boom")
        return real(*args)

    from spf_milter import flow

    real = flow.decide_for
    monkeypatch.setattr("spf_milter.flow.decide_for", broken_once)
    session = harness.session(headers=[FORGED], recipients=["a@x.example"])
    assert session.rcpt_replies[0][0] == Milter.CONTINUE
    assert session.ctx.changed == [("Authentication-Results", 1, "")]


def test_accept_never_undoes_a_refusal_already_decided(
    harness: MilterHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("spf_milter.flow.recipient_domain", broken)
    session = harness.session(client_ip=FAILING_CLIENT)
    code, reply = session.rcpt_replies[0]
    assert code == Milter.REJECT
    assert reply is not None
    assert reply[0] == "550"


def test_accept_never_passes_fields_that_were_not_checked_for_forgery(
    harness: MilterHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("spf_milter.flow.is_our_authserv_id", broken)
    session = harness.session(headers=[FORGED])
    assert session.replies["eom"] == Milter.TEMPFAIL


def test_accept_never_passes_a_message_that_carried_a_forged_field(
    harness: MilterHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("spf_milter.flow.header_fields", lambda *a: 1 / 0)
    forged = harness.session(headers=[FORGED])
    client_spf = harness.session(headers=[("Received-SPF", "pass (forged)")])
    clean = harness.session(headers=[("Subject", "hello")])
    assert forged.replies["eom"] == Milter.TEMPFAIL
    assert client_spf.replies["eom"] == Milter.TEMPFAIL  # a DMARC reader's input
    assert clean.replies["eom"] == Milter.ACCEPT


# -- steps the MTA does not wait for -------------------------------------------
# Connect, HELO and MAIL FROM are answered without a reply (nothing is decided
# before RCPT): an error there is answered at the next step the MTA waits for.

ERROR_REPLY = ("451", "4.3.0", "Temporary SPF milter error, try again later")


def _broken(*args: object) -> None:
    raise ZeroDivisionError("boom")


def _break_mail_from_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the first MAIL FROM step fail, in the adapter, before the Flow."""
    real = Milter.Base.getsymval
    calls = iter(["broken"])

    def broken_once(self: Milter.Base, name: str) -> object:
        if name == "{auth_authen}" and next(calls, None):
            raise ZeroDivisionError("boom")
        return real(self, name)

    monkeypatch.setattr(Milter.Base, "getsymval", broken_once)


@pytest.mark.parametrize("step", ["hello", "mail_from"])
def test_an_error_in_a_step_without_reply_tempfails_every_recipient(
    harness: MilterHarness,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    step: str,
) -> None:
    monkeypatch.setattr(f"spf_milter.flow.Flow.{step}", _broken)
    harness.with_settings(on_error=OnError.TEMPFAIL)
    try:
        with caplog.at_level("ERROR"):
            session = harness.session(recipients=["a@x.example", "b@y.example"])
    finally:
        harness.with_settings(on_error=OnError.ACCEPT)
    assert session.replies["envfrom"] == Milter.NOREPLY
    assert session.rcpt_replies == [(Milter.TEMPFAIL, ERROR_REPLY)] * 2
    callback = {"hello": "hello", "mail_from": "envfrom"}[step]
    assert caplog.text.count(f"internal error in {callback}") == 1


def test_accept_steps_aside_for_an_error_at_mail_from(
    harness: MilterHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipients go on; a message with no transaction to note its
    header fields in is deferred at its end rather than passed unchecked."""
    _break_mail_from_once(monkeypatch)
    session = harness.session(headers=[FORGED])
    assert session.rcpt_replies[0][0] == Milter.CONTINUE
    assert session.replies["eom"] == Milter.TEMPFAIL


def test_an_error_at_mail_from_ends_with_its_transaction(
    harness: MilterHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused transaction's error does not follow the next one (RSET)."""
    from helpers.harness import RecordingCtx

    _break_mail_from_once(monkeypatch)
    harness.with_settings(on_error=OnError.TEMPFAIL)
    ctx = RecordingCtx()
    try:
        with harness.factory():
            ctx._negotiate()
            ctx._stage = Milter.M_CONNECT
            Milter.connect_callback(ctx, "[192.0.2.10]", 2, PASSING_CLIENT)
            ctx._helo("mail.example.net")
            ctx._envfrom("<a@example.net>")
            first = ctx._envrcpt("<u@x.example>")
            ctx.getpriv().abort()
            ctx._envfrom("<a@example.net>")
            second = ctx._envrcpt("<u@x.example>")
    finally:
        harness.with_settings(on_error=OnError.ACCEPT)
    assert (first, second) == (Milter.TEMPFAIL, Milter.CONTINUE)
