"""End to end: the real daemon behind a private Postfix and a private Sendmail.

Every scenario runs on both MTAs through the parametrized ``mta`` fixture,
each wired to the daemon with README.md's own lines (mta.wiring) and no
macro settings: the daemon asks each MTA for the macros it reads. Sendmail
has no XCLIENT, so clients are real loopback sources (127.0.0.10 and ::1
are example.net's in tests/zones/e2e.zone, 127.0.0.20 is nobody's) and the
daemon trusts 127.0.0.1 only. The daemon checks against that zone, served
by a DNS server on 127.0.0.1, and the delivered file is read back. A few
Postfix-only tests at the end claim documentation addresses with XCLIENT.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.headerparse import (
    ReceivedSpf,
    clauses,
    parse_auth_results,
    parse_received_spf,
)
from helpers.milterdaemon import MilterDaemon
from mta.common import Mta, make_public_dir
from mta.delivery import DELIVERY_TIMEOUT, Delivery
from mta.milterprocess import MilterSocket
from mta.postfix import PostfixInstance
from mta.smtp import SendResult, send
from mta.wait import wait_until

pytestmark = pytest.mark.integration

ZONE = Path(__file__).resolve().parents[1] / "zones" / "e2e.zone"
AUTHSERV_ID = "mx.test.example"
CONFIG = f"""\
authserv_id: {AUTHSERV_ID}
headers:
  receiver: {AUTHSERV_ID}
trusted_networks:
  - 127.0.0.1/32
"""
POLICY = """\
default:
  mailfrom:
    fail: reject
domains:
  strict.test:
    helo:
      fail: reject
    mailfrom:
      permerror: reject
      temperror: defer
  hold.test:
    mailfrom:
      softfail: quarantine
"""
BROKEN_POLICY = "default:\n  mailfrom:\n    fail: rejct\n"

PASS_SOURCE = "127.0.0.10"  # example.net's (ip4:127.0.0.10/31), loop.example.net
FAIL_SOURCE = "127.0.0.20"  # nobody's
TRUSTED_SOURCE = "127.0.0.1"  # the daemon's trusted_networks
HELO = "loop.example.net"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(Zone.from_text(ZONE.read_text())) as server:
        yield server


@pytest.fixture(scope="module")
def spf_daemon(dns: DnsServer) -> Iterator[MilterDaemon]:
    work_dir = make_public_dir("spf-milter-e2e-")
    daemon = MilterDaemon(
        work_dir,
        config=CONFIG,
        policy=POLICY,
        nameserver=f"127.0.0.1:{dns.port}",
        unix_socket=True,
    )
    try:
        with daemon:
            yield daemon
        assert "Traceback" not in daemon.log(), daemon.log()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _socket(daemon: MilterDaemon) -> MilterSocket:
    return MilterSocket.unix(daemon.socket_path)


@pytest.fixture
def mta(mta_session: Mta, spf_daemon: MilterDaemon) -> Mta:
    """Postfix, then Sendmail, wired to the daemon with README.md's lines."""
    mta_session.reconfigure(milter=_socket(spf_daemon))
    return mta_session


def _send(mta: Mta, *, source: str = PASS_SOURCE, **kwargs: object) -> SendResult:
    """One session from ``source``, a loopback address (::1 for IPv6)."""
    kwargs.setdefault("helo", HELO)
    kwargs.setdefault("rcpt_to", ["user@dest.test"])
    host = "::1" if ":" in source else "127.0.0.1"
    return send(mta.port, host=host, source=source, **kwargs)  # type: ignore[arg-type]


def _delivered(mta: Mta, result: SendResult) -> Delivery:
    assert result.accepted, result
    return mta.wait_for_delivery(message_id=result.message_id)


def _field_value(field: bytes) -> str:
    return field.decode("ascii").split(":", 1)[1].strip()


def _field_names(delivery: Delivery) -> list[bytes]:
    return [
        field.split(b":", 1)[0]
        for field in delivery.raw_header.split(b"\n")
        if field and field[:1] not in b" \t"
    ]


def _auth_results(delivery: Delivery) -> dict[str, tuple[str, str]]:
    """Return {property name: (result, value)} of our one A-R field."""
    values = [_field_value(f) for f in delivery.raw_fields("Authentication-Results")]
    ours = [v for v in values if v.startswith(AUTHSERV_ID)]
    assert len(ours) == 1, values
    parsed = parse_auth_results(ours[0])
    assert parsed.authserv_id == AUTHSERV_ID
    return {
        prop.split(".")[1]: (result, value)
        for _, result, _, props in clauses(parsed)
        for prop, value in props
    }


def _received_spf(delivery: Delivery) -> ReceivedSpf:
    fields = delivery.raw_fields("Received-SPF")
    assert len(fields) == 1, fields
    return parse_received_spf(_field_value(fields[0]))


def _decision(daemon: MilterDaemon, text: str) -> str:
    """Wait for, and return, the daemon's one decision line containing ``text``."""
    log = daemon.wait_for_log(lambda log: text in log)
    (line,) = [entry for entry in log.splitlines() if text in entry]
    return line


# -- every scenario, on both MTAs ----------------------------------------------


def test_pass_is_delivered_with_both_fields(mta: Mta) -> None:
    delivery = _delivered(mta, _send(mta, mail_from="alice@example.net"))
    assert _auth_results(delivery) == {
        "mailfrom": ("pass", "alice@example.net"),
        "helo": ("pass", HELO),
    }
    received = _received_spf(delivery)
    assert received.result == "pass"
    assert received.pairs == {
        "receiver": AUTHSERV_ID,
        "client-ip": PASS_SOURCE,
        "envelope-from": "alice@example.net",
        "helo": HELO,
        "identity": "mailfrom",
        "mechanism": "ip4:127.0.0.10/31",
    }


def test_inserted_fields_are_above_the_mtas_received(mta: Mta) -> None:
    # The milter inserts its fields at index 0, and RFC 7208 §9.1 wants
    # Received-SPF above the receiver's own Received:. Postfix 3.7 and
    # Sendmail 8.17 alike put index 0 above the Received: they added, so
    # the order is the same on both. Return-Path comes later, from each
    # MTA's delivery agent (Postfix's pipe flag R, the Sendmail mailer's P).
    delivery = _delivered(mta, _send(mta, mail_from="alice@example.net"))
    assert _field_names(delivery)[:4] == [
        b"Return-Path",
        b"Authentication-Results",
        b"Received-SPF",
        b"Received",
    ], delivery.raw_header.decode()


def test_decision_log_line_has_the_queue_id(mta: Mta, spf_daemon: MilterDaemon) -> None:
    sender = f"bob-{mta.name}@example.net"  # the daemon serves both MTAs
    result = _send(mta, mail_from=sender)
    delivery = _delivered(mta, result)
    assert delivery.queue_id == result.queue_id
    line = _decision(spf_daemon, f'sender="{sender}"')
    assert f"queue={delivery.queue_id} client={PASS_SOURCE} " in line
    assert 'rcpt_domain="dest.test" rule=default' in line
    assert "mailfrom_result=pass" in line
    assert "action=accept" in line


# A refused recipient's reply, as each MTA words the milter's text, and
# whether the queue id is known by then: Sendmail assigns it at MAIL,
# Postfix only once a recipient is accepted (its queue file opens then).
REFUSED = {
    "postfix": ("5.7.23 127.0.0.20 is not allowed to send for example.org", False),
    "sendmail": (
        "5.7.23 <refused@dest.test>... 127.0.0.20 is not allowed to send for"
        " example.org",
        True,
    ),
}


def test_fail_is_rejected_at_rcpt_with_the_explanation(
    mta: Mta, spf_daemon: MilterDaemon
) -> None:
    sender = f"eve-{mta.name}@example.org"
    result = _send(
        mta,
        source=FAIL_SOURCE,
        helo="h.example.com",
        mail_from=sender,
        rcpt_to=["refused@dest.test"],
    )
    reply = result.rcpt["refused@dest.test"]
    text, queue_id_known = REFUSED[mta.name]
    assert (reply.code, reply.text) == (550, text)
    assert not result.accepted
    line = _decision(spf_daemon, f'sender="{sender}"')
    assert f'client={FAIL_SOURCE} helo="h.example.com"' in line
    assert "mailfrom_result=fail" in line
    assert "action=reject" in line
    assert (" queue=" in line) is queue_id_known, line


@pytest.mark.parametrize(
    ("sender", "result"),
    [
        ("a@soft.example.net", "softfail"),
        ("a@neutral.example.net", "neutral"),
        ("a@nospf.example.net", "none"),
        ("a@broken.example.net", "permerror"),
        ("a@slow-{mta}.example.net", "temperror"),  # the DNS server never answers
    ],
    ids=["softfail", "neutral", "none", "permerror", "temperror"],
)
def test_other_results_are_tagged_by_default(
    mta: Mta, sender: str, result: str
) -> None:
    sender = sender.format(mta=mta.name)
    delivery = _delivered(mta, _send(mta, mail_from=sender))
    assert _auth_results(delivery)["mailfrom"] == (result, sender)
    assert _received_spf(delivery).result == result


@pytest.mark.parametrize(
    ("sender", "code", "status"),
    [("a@broken.example.net", 550, "5.7.24"), ("a@slow.example.net", 451, "4.7.24")],
    ids=["permerror-rejected", "temperror-deferred"],
)
def test_errors_follow_a_stricter_domain_policy(
    mta: Mta, sender: str, code: int, status: str
) -> None:
    result = _send(mta, mail_from=sender, rcpt_to=["user@strict.test"])
    reply = result.rcpt["user@strict.test"]
    assert (reply.code, reply.text.split()[0]) == (code, status)


def test_helo_fail_alone_rejects_where_the_policy_says_so(mta: Mta) -> None:
    result = _send(
        mta,
        helo="liar.example.net",
        mail_from="alice@example.net",
        rcpt_to=["user@strict.test", "user@dest.test"],
    )
    assert result.rcpt["user@strict.test"].code == 550
    delivery = _delivered(mta, result)
    assert delivery.recipients == ("user@dest.test",)
    assert _auth_results(delivery)["helo"] == ("fail", "liar.example.net")
    assert _auth_results(delivery)["mailfrom"] == ("pass", "alice@example.net")


def test_two_recipient_domains_with_different_policies(mta: Mta) -> None:
    result = _send(
        mta, mail_from="a@broken.example.net", rcpt_to=["x@strict.test", "y@dest.test"]
    )
    assert result.rcpt["x@strict.test"].code == 550
    assert result.rcpt["y@dest.test"].code == 250
    delivery = _delivered(mta, result)
    assert delivery.recipients == ("y@dest.test",)
    assert _received_spf(delivery).result == "permerror"


# How each MTA logs a quarantined message: Sendmail keeps the milter's
# reason (mailq -qQ shows it too), Postfix 3.7 drops it.
HOLD_LOGGED = {
    "postfix": "milter-hold: END-OF-MESSAGE from unknown[127.0.0.10]:"
    " milter triggers HOLD action",
    "sendmail": "milter=spf-milter, quarantine=SPF mailfrom check of"
    " soft.example.net returned softfail",
}


def test_quarantine_holds_the_message_in_the_mtas_queue(mta: Mta) -> None:
    log_start = mta.log_position()
    result = _send(mta, mail_from="q@soft.example.net", rcpt_to=["user@hold.test"])
    assert result.accepted, result
    queue_id = result.queue_id
    assert queue_id is not None
    wait_until(
        lambda: queue_id in mta.held(),
        timeout=DELIVERY_TIMEOUT,
        what=f"{queue_id} in the hold queue of {mta.name}",
    )
    assert f"{queue_id}: {HOLD_LOGGED[mta.name]}" in mta.maillog(log_start)
    assert all(delivery.queue_id != queue_id for delivery in mta.delivered())


def test_null_sender_is_checked_as_postmaster_at_helo(mta: Mta) -> None:
    delivery = _delivered(mta, _send(mta, mail_from=""))
    assert _auth_results(delivery)["mailfrom"] == ("pass", f"postmaster@{HELO}")
    received = _received_spf(delivery).pairs
    assert received["envelope-from"] == f"postmaster@{HELO}"
    assert received["identity"] == "mailfrom"


def test_ipv6_client_over_loopback(mta: Mta, spf_daemon: MilterDaemon) -> None:
    if not mta.ipv6:
        pytest.skip("this host cannot bind ::1")
    sender = f"six-{mta.name}@example.net"
    result = _send(mta, source="::1", mail_from=sender)
    delivery = _delivered(mta, result)
    # Sendmail reports the client as IPv6:0:0:0:0:0:0:0:1 (its Received:
    # field shows it so); the milter sees, checks and writes ::1 all the same.
    assert _auth_results(delivery) == {
        "mailfrom": ("pass", sender),
        "helo": ("pass", HELO),
    }
    received = _received_spf(delivery)
    assert received.pairs["client-ip"] == "::1"
    assert received.pairs["mechanism"] == "ip6:::1/128"
    line = _decision(spf_daemon, f'sender="{sender}"')
    assert f"queue={delivery.queue_id} client=::1 " in line


def test_trusted_network_is_not_checked(mta: Mta) -> None:
    result = _send(mta, source=TRUSTED_SOURCE, mail_from="eve@example.org")
    delivery = _delivered(mta, result)
    assert delivery.raw_fields("Received-SPF") == []
    assert delivery.raw_fields("Authentication-Results") == []


def test_authenticated_client_is_not_checked(
    mta: Mta, spf_daemon: MilterDaemon
) -> None:
    # From a client whose MAIL FROM fails SPF: checked, it would be refused.
    mta.reconfigure(milter=_socket(spf_daemon), sasl_users={"bob": "secret"})
    result = _send(
        mta, source=FAIL_SOURCE, mail_from="eve@example.org", auth=("bob", "secret")
    )
    assert result.auth is not None
    assert result.auth.code == 235, result.auth
    delivery = _delivered(mta, result)
    assert delivery.raw_fields("Received-SPF") == []
    assert delivery.raw_fields("Authentication-Results") == []


def test_forged_results_with_our_id_are_removed_foreign_ones_kept(mta: Mta) -> None:
    headers = [
        (
            "Authentication-Results",
            f"{AUTHSERV_ID}; spf=pass smtp.mailfrom=eve@example.org",
        ),
        (
            "Authentication-Results",
            "other.example; spf=fail smtp.mailfrom=x@example.org",
        ),
        ("Authentication-Results", f"(forged) {AUTHSERV_ID.upper()};\r\n\tdkim=pass"),
    ]
    delivery = _delivered(
        mta, _send(mta, mail_from="alice@example.net", headers=headers)
    )
    fields = [
        b" ".join(f.split()) for f in delivery.raw_fields("Authentication-Results")
    ]
    assert len(fields) == 2
    foreign = b"other.example; spf=fail smtp.mailfrom=x@example.org"
    assert fields[1] == b"Authentication-Results: " + foreign
    assert _auth_results(delivery)["mailfrom"] == ("pass", "alice@example.net")


@pytest.mark.parametrize(
    ("helo", "sender", "refused_by"),
    [
        ('evil;identity=helo (x) "q"', "alice@example.net", {"sendmail"}),
        (HELO, '"a;b client-ip=1.2.3.4"@example.net', set()),
        # Postfix turns the CR into a space.
        ("a\rX-Injected: yes", "alice@example.net", {"sendmail"}),
    ],
    ids=["helo", "sender", "cr"],
)
def test_hostile_helo_and_sender_stay_inside_single_fields(
    mta: Mta, helo: str, sender: str, refused_by: set[str]
) -> None:
    result = _send(mta, helo=helo, mail_from=sender)
    if mta.name in refused_by:
        # Sendmail refuses such a HELO name itself: the milter never sees it.
        assert str(result.helo) == "501 5.0.0 Invalid domain name"
        return
    delivery = _delivered(mta, result)
    assert delivery.raw_fields("X-Injected") == []
    received = _received_spf(delivery).pairs
    assert received["identity"] == "mailfrom"
    assert received["client-ip"] == PASS_SOURCE
    assert received["envelope-from"] == sender
    assert set(_auth_results(delivery)) == {"mailfrom", "helo"}


# What each MTA answers when its milter cannot be reached, as README.md's
# wiring sets it up: Postfix milter_default_action = tempfail, Sendmail F=T.
MILTER_DOWN = {
    "postfix": "451 4.7.1 Service unavailable - try again later",
    "sendmail": "451 4.3.2 Please try again later",
}


def test_milter_down_is_a_temporary_failure(
    mta_session: Mta, spf_daemon: MilterDaemon
) -> None:
    nobody = MilterSocket.unix(spf_daemon.work_dir / "nobody-listens.sock")
    mta_session.reconfigure(milter=nobody)
    result = _send(mta_session, mail_from="alice@example.net")
    assert str(result.mail) == MILTER_DOWN[mta_session.name]
    assert not result.accepted


def test_dry_run_tags_and_logs_instead_of_rejecting(
    mta: Mta, spf_daemon: MilterDaemon
) -> None:
    spf_daemon.rewrite_config(CONFIG + "dry_run: true\n")
    assert "reloaded" in spf_daemon.reload()
    try:
        sender = f"dry-{mta.name}@example.org"
        result = _send(mta, source=FAIL_SOURCE, mail_from=sender)
        delivery = _delivered(mta, result)
        assert _received_spf(delivery).result == "fail"
        line = _decision(spf_daemon, f'sender="{sender}"')
        assert "action=would-reject" in line
    finally:
        spf_daemon.rewrite_config(CONFIG)
        assert "reloaded" in spf_daemon.reload()


def test_reload_with_a_broken_policy_keeps_serving_the_old_one(
    mta: Mta, spf_daemon: MilterDaemon
) -> None:
    spf_daemon.policy_path.write_text(BROKEN_POLICY)
    spf_daemon.expect_log(r"^reload")  # the errors this test provokes
    try:
        text = spf_daemon.reload()
        assert "policy.yaml:3:11: default.mailfrom.fail: unknown action 'rejct'" in text
        assert "reload failed" in text
        result = _send(mta, source=FAIL_SOURCE, mail_from="eve@example.org")
        assert result.rcpt["user@dest.test"].code == 550  # the old policy still rejects
    finally:
        spf_daemon.policy_path.write_text(POLICY)
        assert "reloaded" in spf_daemon.reload()


# -- Postfix only: XCLIENT claims addresses no loopback source can have ---------


@pytest.fixture
def xclient_postfix(
    postfix_session: PostfixInstance, spf_daemon: MilterDaemon
) -> PostfixInstance:
    postfix_session.reconfigure(milter=_socket(spf_daemon))
    return postfix_session


@pytest.mark.postfix
@pytest.mark.parametrize(
    ("client_ip", "seen", "mechanism"),
    [
        ("192.0.2.10", "192.0.2.10", "ip4:192.0.2.0/24"),
        ("2001:db8::10", "2001:db8::10", "ip6:2001:db8::/32"),
        # RFC 7208 §5: an IPv4-mapped client is checked as the IPv4 address.
        # Postfix itself hands it to the milter as IPv4 (AF_INET), as
        # Sendmail does for a client of an IPv6 socket bound to ::ffff:127.0.0.1.
        ("::ffff:192.0.2.10", "192.0.2.10", "ip4:192.0.2.0/24"),
    ],
    ids=["ipv4", "ipv6", "ipv4-mapped"],
)
def test_xclient_documentation_addresses(
    xclient_postfix: PostfixInstance, client_ip: str, seen: str, mechanism: str
) -> None:
    result = send(
        xclient_postfix.port,
        client_ip=client_ip,
        helo="mail.example.net",
        mail_from="a@example.net",
        rcpt_to=["user@dest.test"],
    )
    delivery = _delivered(xclient_postfix, result)
    assert _auth_results(delivery)["mailfrom"] == ("pass", "a@example.net")
    received = _received_spf(delivery).pairs
    assert (received["client-ip"], received["mechanism"]) == (seen, mechanism)
