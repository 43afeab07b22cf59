"""The milter callbacks under pymilter's TestCtx: every path libmilter can take."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import authres
import Milter
import pytest

from helpers.dnszone import Zone
from helpers.harness import MilterHarness, RecordingCtx
from spf_milter.callbacks import SpfMilter, parse_client_address
from spf_milter.settings import Settings

CONFIG = """\
socket: inet:8894@127.0.0.1
authserv_id: mx.test.example
headers:
  receiver: mx.test.example
trusted_networks: [127.0.0.0/8, "::1/128", 198.51.100.0/24]
dns:
  time_limit: 2
"""
POLICY = """\
default:
  mailfrom:
    fail: reject
domains:
  strict.example:
    helo:
      fail: reject
    mailfrom:
      softfail: reject
      temperror: defer
  held.example:
    mailfrom:
      fail: quarantine
  shadow.example:
    shadow: true
"""
ZONE = """\
$TTL 300
$ORIGIN example.net.
@            TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"
mail         TXT "v=spf1 ip4:192.0.2.10 -all"
soft         TXT "v=spf1 ~all"
forged-helo  TXT "v=spf1 -all"
$ORIGIN example.org.
@            TXT "v=spf1 -all exp=why.example.org"
why          TXT "%{i} is not welcome here"
;! timeout slow
lazy         TXT "v=spf1 -all"
;! delay lazy 1.5
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilterHarness]:
    directory = tmp_path_factory.mktemp("callbacks")
    (directory / "spf-milter.yaml").write_text(CONFIG)
    (directory / "policy.yaml").write_text(POLICY)
    harness = MilterHarness(directory / "spf-milter.yaml", Zone.from_text(ZONE))
    yield harness
    harness.close()


def _ar(value: str) -> authres.AuthenticationResultsHeader:
    return authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + " ".join(value.split())
    )


def test_pass_is_tagged_at_the_top_with_both_identities(harness: MilterHarness) -> None:
    session = harness.session(helo="mail.example.net", mail_from="alice@example.net")
    assert session.rcpt_replies == [(Milter.CONTINUE, None)]
    assert session.replies["eom"] == Milter.CONTINUE
    assert [(name, idx) for name, _, idx in session.ctx.added] == [
        ("Received-SPF", 0),
        ("Authentication-Results", 0),
    ]  # inserted in this order at index 0: A-R ends up on top
    parsed = _ar(session.added["Authentication-Results"])
    assert parsed.authserv_id == "mx.test.example"
    results = {
        (r.result, r.properties[0].name, r.properties[0].value) for r in parsed.results
    }
    assert results == {
        ("pass", "mailfrom", "alice@example.net"),
        ("pass", "helo", "mail.example.net"),
    }
    received = session.added["Received-SPF"]
    assert received.startswith("pass ")
    assert "identity=mailfrom" in received
    assert 'envelope-from="alice@example.net"' in received


def test_fail_is_rejected_at_rcpt_with_the_explanation(harness: MilterHarness) -> None:
    session = harness.session(client_ip="192.0.2.77", mail_from="eve@example.org")
    code, reply = session.rcpt_replies[0]
    assert code == Milter.REJECT
    assert reply == ("550", "5.7.23", "192.0.2.77 is not welcome here")


def test_two_recipient_domains_get_their_own_policy(harness: MilterHarness) -> None:
    session = harness.session(
        client_ip="192.0.2.10",
        helo="mail.example.net",
        mail_from="carol@soft.example.net",
        recipients=["a@strict.example", "b@example.com"],
    )
    (strict, strict_reply), (relaxed, _) = session.rcpt_replies
    assert strict == Milter.REJECT
    assert strict_reply[:2] == ("550", "5.7.1")  # RFC 7372 X.7.23 is for fail only
    assert relaxed == Milter.CONTINUE
    assert session.added["Received-SPF"].startswith("softfail ")


def test_helo_fail_alone_decides_where_the_policy_says_so(
    harness: MilterHarness,
) -> None:
    session = harness.session(
        client_ip="192.0.2.10",
        helo="forged-helo.example.net",
        mail_from="alice@example.net",  # passes
        recipients=["a@strict.example", "b@example.com"],
    )
    assert [code for code, _ in session.rcpt_replies] == [
        Milter.REJECT,
        Milter.CONTINUE,
    ]


def test_null_sender_is_checked_as_postmaster_at_helo(harness: MilterHarness) -> None:
    query = ("TXT", "mail.example.net")
    before = harness.lookup.queries.count(query)
    session = harness.session(helo="mail.example.net", mail_from="")
    received = session.added["Received-SPF"]
    assert 'envelope-from="postmaster@mail.example.net"' in received
    assert "identity=mailfrom" in received
    parsed = _ar(session.added["Authentication-Results"])
    mailfrom = [r for r in parsed.results if r.properties[0].name == "mailfrom"]
    assert mailfrom[0].properties[0].value == "postmaster@mail.example.net"
    # One check served both identities: the HELO check is postmaster@HELO too.
    assert harness.lookup.queries.count(query) - before == 1


def test_trusted_network_is_neither_checked_nor_tagged(harness: MilterHarness) -> None:
    before = len(harness.lookup.queries)
    session = harness.session(client_ip="198.51.100.7", mail_from="eve@example.org")
    assert session.rcpt_replies == [(Milter.CONTINUE, None)]
    assert session.ctx.added == []
    assert len(harness.lookup.queries) == before


def test_authenticated_client_is_not_checked_but_forgeries_are_removed(
    harness: MilterHarness,
) -> None:
    session = harness.session(
        client_ip="203.0.113.5",
        mail_from="eve@example.org",
        macros={"{auth_authen}": "eve"},
        headers=[("Authentication-Results", "mx.test.example; spf=pass")],
    )
    assert session.rcpt_replies == [(Milter.CONTINUE, None)]
    assert session.ctx.added == []
    assert session.ctx.changed == [("Authentication-Results", 1, "")]


def test_an_undecodable_macro_is_ignored_not_fatal(harness: MilterHarness) -> None:
    session = harness.session(macros={"{auth_authen}": b"\xff", "i": b"\xfe"})
    assert session.rcpt_replies == [(Milter.CONTINUE, None)]
    assert "Received-SPF" in session.added  # checked: not taken as authenticated


def test_forged_results_with_our_id_go_and_foreign_ones_stay(
    harness: MilterHarness,
) -> None:
    session = harness.session(
        headers=[
            ("Authentication-Results", "other.example; spf=fail smtp.mailfrom=x@y"),
            ("Authentication-Results", "MX.TEST.EXAMPLE; spf=pass"),
            ("Received", "from somewhere"),
            ("Authentication-Results", "(comment) mx.test.example;\n\tdkim=pass"),
        ]
    )
    assert session.ctx.changed == [
        ("Authentication-Results", 3, ""),
        ("Authentication-Results", 2, ""),
    ]


def test_temperror_follows_the_policy(harness: MilterHarness) -> None:
    session = harness.session(
        mail_from="x@slow.example.org", recipients=["a@strict.example", "b@example.com"]
    )
    (strict, reply), (relaxed, _) = session.rcpt_replies
    assert strict == Milter.TEMPFAIL
    assert reply[:2] == ("451", "4.7.24")
    assert relaxed == Milter.CONTINUE
    assert session.added["Received-SPF"].startswith("temperror ")


def test_a_check_past_the_wait_limit_is_temperror_for_the_real_sender(
    harness: MilterHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Settings, "wait_limit", property(lambda self: 0.3))
    session = harness.session(mail_from="x@lazy.example.org")
    assert session.rcpt_replies == [(Milter.CONTINUE, None)]
    received = session.added["Received-SPF"]
    assert received.startswith("temperror ")
    assert 'envelope-from="x@lazy.example.org"' in received
    assert "domain of x@lazy.example.org" in " ".join(received.split())
    assert 'problem="no result within 0.3 s"' in received
    (mailfrom, _helo) = _ar(session.added["Authentication-Results"]).results
    assert mailfrom.result == "temperror"
    assert mailfrom.properties[0].value == "x@lazy.example.org"


def test_quarantine_and_shadow(harness: MilterHarness) -> None:
    held = harness.session(
        client_ip="192.0.2.77",
        mail_from="eve@example.org",
        recipients=["a@held.example"],
    )
    assert held.rcpt_replies == [(Milter.CONTINUE, None)]
    assert len(held.ctx.quarantined) == 1
    shadow = harness.session(
        client_ip="192.0.2.77",
        mail_from="eve@example.org",
        recipients=["a@shadow.example"],
    )
    assert shadow.rcpt_replies == [(Milter.CONTINUE, None)]
    assert shadow.ctx.quarantined == []


def test_dry_run_never_rejects_and_logs_what_it_would_do(
    harness: MilterHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.with_settings(dry_run=True)
    try:
        with caplog.at_level("INFO"):
            session = harness.session(
                client_ip="192.0.2.77", mail_from="eve@example.org"
            )
    finally:
        harness.with_settings(dry_run=False)
    assert session.rcpt_replies == [(Milter.CONTINUE, None)]
    assert session.added["Received-SPF"].startswith("fail ")
    assert "action=would-reject" in caplog.text


def test_helo_address_literal_gives_none(harness: MilterHarness) -> None:
    session = harness.session(helo="[192.0.2.10]", mail_from="alice@example.net")
    parsed = _ar(session.added["Authentication-Results"])
    helo = [r for r in parsed.results if r.properties[0].name == "helo"]
    assert helo[0].result == "none"


@pytest.mark.parametrize("client", ["2001:db8::25", "::ffff:192.0.2.10"])
def test_ipv6_and_ipv4_mapped_clients(harness: MilterHarness, client: str) -> None:
    session = harness.session(
        client_ip=client, helo="x.example", mail_from="a@example.net"
    )
    assert session.added["Received-SPF"].startswith("pass ")


def test_a_bug_in_a_callback_tempfails_and_is_logged(
    harness: MilterHarness,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("spf_milter.flow.decide_for", broken)
    with caplog.at_level("ERROR"):
        session = harness.session()
    code, reply = session.rcpt_replies[0]
    assert code == Milter.TEMPFAIL
    assert reply == ("451", "4.3.0", "Temporary SPF milter error, try again later")
    assert "internal error in envrcpt" in caplog.text
    assert "ZeroDivisionError: boom" in caplog.text


def test_on_error_accept_lets_the_message_through(
    harness: MilterHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spf_milter.config import OnError

    monkeypatch.setattr("spf_milter.flow.header_fields", lambda *a: 1 / 0)
    harness.with_settings(on_error=OnError.ACCEPT)
    try:
        session = harness.session()
    finally:
        harness.with_settings(on_error=OnError.TEMPFAIL)
    assert session.replies["eom"] == Milter.ACCEPT


def test_abort_drops_the_transaction_and_the_next_one_starts_clean(
    harness: MilterHarness,
) -> None:
    ctx = RecordingCtx()
    with harness.factory():
        ctx._negotiate()
        ctx._stage = Milter.M_CONNECT
        Milter.connect_callback(ctx, "[192.0.2.77]", socket.AF_INET, "192.0.2.77")
        milter: SpfMilter = ctx.getpriv()
        ctx._helo("h.example.org")
        ctx._envfrom("<eve@example.org>")
        assert ctx._envrcpt("<a@dest.example>") == Milter.REJECT
        milter.header("Authentication-Results", "mx.test.example; spf=pass")
        assert milter.abort() == Milter.CONTINUE
        assert milter.flow is not None
        assert milter.flow.conn.transaction is None
        ctx._envfrom("<alice@example.net>")  # RSET, then a new sender
        assert milter.flow.conn.transaction.forged == []
        assert ctx._envrcpt("<a@dest.example>") == Milter.CONTINUE
        ctx._body = True
        ctx._stage = Milter.M_EOM
        assert milter.eom() == Milter.CONTINUE
    assert ctx.changed == []  # the aborted message's forgery is not this one's
    received = dict((n, v) for n, v, _ in ctx.added)["Received-SPF"]
    assert received.startswith("pass ")  # the new sender's result, not eve's fail
    assert 'envelope-from="alice@example.net"' in received


def test_a_new_transaction_starts_clean(harness: MilterHarness) -> None:
    session = harness.session(
        client_ip="192.0.2.77",
        mail_from="eve@example.org",
        headers=[("Authentication-Results", "mx.test.example; spf=pass")],
    )
    milter: SpfMilter = session.milter
    assert milter.flow is None  # closed: nothing outlives the connection


@pytest.mark.parametrize(
    ("family", "hostaddr", "expected"),
    [
        (2, ("192.0.2.1", 25), "192.0.2.1"),
        (10, ("2001:db8::1", 25, 0, 0), "2001:db8::1"),
        (10, ("::ffff:192.0.2.1", 25, 0, 0), "::ffff:c000:201"),  # Flow unmaps
        (10, ("IPv6:0:0:0:0:0:0:0:1", 25, 0, 0), "::1"),
        (10, ("fe80::1%eth0", 25, 0, 0), "fe80::1"),
        (1, "/run/socket", None),
        (0, None, None),
        (2, ("not-an-address", 25), None),
    ],
)
def test_client_address_spellings(
    family: int, hostaddr: object, expected: str | None
) -> None:
    address = parse_client_address(family, hostaddr)
    assert (str(address) if address else None) == expected


def test_config_fixture_is_valid(tmp_path: Path) -> None:
    (tmp_path / "spf-milter.yaml").write_text(CONFIG)
    (tmp_path / "policy.yaml").write_text(POLICY)
    from spf_milter.config import load_all

    assert (
        load_all(tmp_path / "spf-milter.yaml").daemon.authserv_id == "mx.test.example"
    )


def test_the_checks_of_every_connection_share_one_memo_across_reloads(
    tmp_path: Path,
) -> None:
    # The memo of parsed records is the runner's: one per service, like
    # the DNS cache kept warm across a reload, never the module's.
    (tmp_path / "spf-milter.yaml").write_text(CONFIG + "  nameservers: [127.0.0.1]\n")
    (tmp_path / "policy.yaml").write_text(POLICY)
    harness = MilterHarness(tmp_path / "spf-milter.yaml", Zone.from_text(ZONE))
    try:
        service = harness.service
        memo = service.runner.memo
        harness.session(helo="mail.example.net", mail_from="alice@example.net")
        assert len(memo.records) == 2  # mail.example.net and example.net
        harness.session(helo="mail.example.net", mail_from="bob@example.net")
        assert len(memo.records) == 2
        assert service.reload()
        assert service.runner.memo is memo
    finally:
        harness.close()


def test_negotiation_asks_the_mta_for_the_macros_we_read(
    harness: MilterHarness,
) -> None:
    ctx = RecordingCtx()
    with harness.factory():
        ctx._negotiate()
    assert ctx._symlist[Milter.M_CONNECT] == {b"{client_addr}"}
    assert ctx._symlist[Milter.M_ENVFROM] == {b"i", b"{auth_authen}"}
    assert ctx._symlist[Milter.M_ENVRCPT] == {b"i"}
    assert ctx._symlist[Milter.M_EOM] == {b"i"}


def test_client_address_from_the_macro_when_the_mta_gives_none(
    harness: MilterHarness,
) -> None:
    ctx = RecordingCtx()
    ctx._setsymval("{client_addr}", "IPv6:2001:db8:0:0:0:0:0:10")
    with harness.factory():
        ctx._negotiate()
        ctx._stage = Milter.M_CONNECT
        Milter.connect_callback(ctx, "localhost", socket.AF_UNIX, None)
    milter: SpfMilter = ctx.getpriv()
    assert milter.flow is not None
    assert str(milter.flow.conn.client_ip) == "2001:db8::10"


def test_a_failed_macro_request_falls_back_to_every_step(
    harness: MilterHarness, caplog: pytest.LogCaptureFixture
) -> None:
    class Refusing(RecordingCtx):  # type: ignore[misc]
        def setsymlist(self, stage: int, macros: str) -> None:
            raise RuntimeError("refused")

    ctx = Refusing()
    with harness.factory(), caplog.at_level("ERROR"):
        assert ctx._negotiate() == Milter.ALL_OPTS
    assert "could not ask for macros" in caplog.text
