"""End to end: the real daemon behind a private Postfix, real DNS on loopback.

Mail goes in over SMTP (XCLIENT lets a test claim any client address while
every packet stays on loopback), the daemon checks it against the test zone
served by a DNS server on 127.0.0.1, and the delivered file is read back.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import MilterDaemon
from dnsserver import DnsServer
from dnszone import Zone
from headerparse import (
    ReceivedSpf,
    clauses,
    parse_auth_results,
    parse_received_spf,
)
from mta.delivery import Delivery
from mta.postfix import PostfixInstance, make_public_dir, postfix_available
from mta.smtp import SendResult, send

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

ZONE = Path(__file__).resolve().parents[1] / "zones" / "e2e.zone"
AUTHSERV_ID = "mx.test.example"
CONFIG = f"""\
authserv_id: {AUTHSERV_ID}
headers:
  receiver: {AUTHSERV_ID}
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
"""
BROKEN_POLICY = "default:\n  mailfrom:\n    fail: rejct\n"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(Zone.from_text(ZONE.read_text())) as server:
        yield server


@pytest.fixture(scope="module")
def spf_daemon(dns: DnsServer) -> Iterator[MilterDaemon]:
    if not postfix_available():
        pytest.skip("Postfix is not installed; scripts/test installs it")
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


@pytest.fixture
def mta(postfix_session: PostfixInstance, spf_daemon: MilterDaemon) -> PostfixInstance:
    postfix_session.reset(milter=spf_daemon.milter_spec)
    return postfix_session


def _send(mta: PostfixInstance, **kwargs: object) -> SendResult:
    kwargs.setdefault("client_ip", "192.0.2.10")
    kwargs.setdefault("helo", "mail.example.net")
    kwargs.setdefault("rcpt_to", ["user@dest.test"])
    return send(mta.port, **kwargs)  # type: ignore[arg-type]


def _delivered(mta: PostfixInstance, result: SendResult) -> Delivery:
    assert result.accepted, result
    return mta.wait_for_delivery(message_id=result.message_id)


def _field_value(field: bytes) -> str:
    return field.decode("ascii").split(":", 1)[1].strip()


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


def test_pass_is_delivered_with_both_fields_at_the_top(
    mta: PostfixInstance, spf_daemon: MilterDaemon
) -> None:
    delivery = _delivered(mta, _send(mta, mail_from="alice@example.net"))
    # One log line per decision, with the queue id Postfix gave the message.
    line = f"queue={delivery.queue_id} client=192.0.2.10"
    log = spf_daemon.wait_for_log(lambda text: line in text)
    decision = next(entry for entry in log.splitlines() if line in entry)
    assert 'rcpt_domain="dest.test" rule=default' in decision
    assert "mailfrom_result=pass" in decision
    assert "action=accept" in decision
    names = [
        field.split(b":", 1)[0]
        for field in delivery.raw_header.split(b"\n")
        if field and field[:1] not in b" \t"
    ]
    # Return-Path is the delivery agent's (pipe flag R), added after the milter.
    assert names[:4] == [
        b"Return-Path",
        b"Authentication-Results",
        b"Received-SPF",
        b"Received",
    ]
    assert _auth_results(delivery) == {
        "mailfrom": ("pass", "alice@example.net"),
        "helo": ("pass", "mail.example.net"),
    }
    received = _received_spf(delivery)
    assert received.result == "pass"
    assert received.pairs == {
        "receiver": AUTHSERV_ID,
        "client-ip": "192.0.2.10",
        "envelope-from": "alice@example.net",
        "helo": "mail.example.net",
        "identity": "mailfrom",
        "mechanism": "ip4:192.0.2.0/24",
    }


def test_fail_is_rejected_at_rcpt_with_the_explanation(mta: PostfixInstance) -> None:
    result = _send(
        mta, client_ip="203.0.113.7", helo="h.example.com", mail_from="eve@example.org"
    )
    reply = result.rcpt["user@dest.test"]
    assert reply.code == 550
    assert reply.text == "5.7.23 203.0.113.7 is not allowed to send for example.org"
    assert not result.accepted


@pytest.mark.parametrize(
    ("sender", "result"),
    [
        ("a@soft.example.net", "softfail"),
        ("a@neutral.example.net", "neutral"),
        ("a@nospf.example.net", "none"),
        ("a@broken.example.net", "permerror"),
        ("a@slow.example.net", "temperror"),
    ],
)
def test_other_results_are_tagged_by_default(
    mta: PostfixInstance, sender: str, result: str
) -> None:
    delivery = _delivered(mta, _send(mta, mail_from=sender))
    assert _auth_results(delivery)["mailfrom"] == (result, sender)
    assert _received_spf(delivery).result == result


@pytest.mark.parametrize(
    ("sender", "code", "status"),
    [("a@broken.example.net", 550, "5.7.24"), ("a@slow.example.net", 451, "4.7.24")],
    ids=["permerror-rejected", "temperror-deferred"],
)
def test_errors_follow_a_stricter_domain_policy(
    mta: PostfixInstance, sender: str, code: int, status: str
) -> None:
    result = _send(mta, mail_from=sender, rcpt_to=["user@strict.test"])
    reply = result.rcpt["user@strict.test"]
    assert (reply.code, reply.text.split()[0]) == (code, status)


def test_helo_fail_alone_rejects_where_the_policy_says_so(mta: PostfixInstance) -> None:
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


def test_two_recipient_domains_in_one_transaction(mta: PostfixInstance) -> None:
    result = _send(
        mta,
        client_ip="192.0.2.10",
        mail_from="a@broken.example.net",
        rcpt_to=["x@strict.test", "y@dest.test"],
    )
    assert result.rcpt["x@strict.test"].code == 550
    assert result.rcpt["y@dest.test"].code == 250
    assert _delivered(mta, result).recipients == ("y@dest.test",)


def test_null_sender_is_checked_as_postmaster_at_helo(mta: PostfixInstance) -> None:
    delivery = _delivered(mta, _send(mta, helo="mail.example.net", mail_from=""))
    assert _auth_results(delivery)["mailfrom"] == (
        "pass",
        "postmaster@mail.example.net",
    )
    received = _received_spf(delivery).pairs
    assert received["envelope-from"] == "postmaster@mail.example.net"
    assert received["identity"] == "mailfrom"


def test_ipv6_client(mta: PostfixInstance) -> None:
    delivery = _delivered(
        mta, _send(mta, client_ip="2001:db8::10", mail_from="a@example.net")
    )
    assert _auth_results(delivery)["mailfrom"] == ("pass", "a@example.net")
    assert _received_spf(delivery).pairs["client-ip"] == "2001:db8::10"


def test_trusted_network_is_not_checked(mta: PostfixInstance) -> None:
    result = send(
        mta.port,
        helo="localhost",
        mail_from="eve@example.org",
        rcpt_to=["user@dest.test"],
    )  # from 127.0.0.1, no XCLIENT
    delivery = _delivered(mta, result)
    assert delivery.raw_fields("Received-SPF") == []
    assert delivery.raw_fields("Authentication-Results") == []


def test_authenticated_client_is_not_checked(
    postfix_session: PostfixInstance, spf_daemon: MilterDaemon
) -> None:
    postfix_session.reset(milter=spf_daemon.milter_spec, sasl_users={"bob": "secret"})
    result = _send(
        postfix_session,
        client_ip="203.0.113.7",
        mail_from="eve@example.org",
        auth=("bob", "secret"),
    )
    delivery = _delivered(postfix_session, result)
    assert delivery.raw_fields("Received-SPF") == []


def test_forged_results_with_our_id_are_removed_foreign_ones_kept(
    mta: PostfixInstance,
) -> None:
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
    ("helo", "sender"),
    [
        ('evil;identity=helo (x) "q"', "alice@example.net"),
        ("mail.example.net", '"a;b client-ip=1.2.3.4"@example.net'),
        (
            "a\rX-Injected: yes",
            "alice@example.net",
        ),  # Postfix turns the CR into a space
    ],
    ids=["helo", "sender", "cr"],
)
def test_hostile_helo_and_sender_stay_inside_single_fields(
    mta: PostfixInstance, helo: str, sender: str
) -> None:
    delivery = _delivered(mta, _send(mta, helo=helo, mail_from=sender))
    assert delivery.raw_fields("X-Injected") == []
    received = _received_spf(delivery).pairs
    assert received["identity"] == "mailfrom"
    assert received["client-ip"] == "192.0.2.10"
    assert received["envelope-from"] == sender
    assert set(_auth_results(delivery)) == {"mailfrom", "helo"}


def test_dry_run_tags_and_logs_instead_of_rejecting(
    mta: PostfixInstance, spf_daemon: MilterDaemon
) -> None:
    spf_daemon.rewrite_config(CONFIG + "dry_run: true\n")
    assert "reloaded" in spf_daemon.reload()
    try:
        result = _send(mta, client_ip="203.0.113.7", mail_from="eve@example.org")
        delivery = _delivered(mta, result)
        assert _received_spf(delivery).result == "fail"
        spf_daemon.wait_for_log(lambda text: "action=would-reject" in text)
    finally:
        spf_daemon.rewrite_config(CONFIG)
        assert "reloaded" in spf_daemon.reload()


def test_reload_with_a_broken_policy_keeps_serving_the_old_one(
    mta: PostfixInstance, spf_daemon: MilterDaemon
) -> None:
    spf_daemon.policy_path.write_text(BROKEN_POLICY)
    try:
        text = spf_daemon.reload()
        assert "policy.yaml:3:11: default.mailfrom.fail: unknown action 'rejct'" in text
        assert "reload failed" in text
        result = _send(mta, client_ip="203.0.113.7", mail_from="eve@example.org")
        assert result.rcpt["user@dest.test"].code == 550  # the old policy still rejects
    finally:
        spf_daemon.policy_path.write_text(POLICY)
        assert "reloaded" in spf_daemon.reload()
