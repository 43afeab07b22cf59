"""The MTA fixtures themselves: a private Postfix, the SMTP client, the echo milter.

Besides proving the fixtures, the last tests pin down what Postfix 3.7 hands
a milter for odd HELO and MAIL FROM values, and what it rejects itself; the
milter's header-injection tests build on that.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.delivery import Delivery
from mta.echo import EchoMilter, start_echo_milter
from mta.milterprocess import MilterSocket
from mta.postfix import (
    NOT_INSTALLED,
    PostfixInstance,
    make_public_dir,
    postfix_available,
)
from mta.smtp import Headers, send

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postfix,
    pytest.mark.skipif(not postfix_available(), reason=NOT_INSTALLED),
]


def echo_header(delivery: Delivery) -> str:
    """Return the one X-Echo field, exactly as delivered."""
    (field,) = delivery.raw_fields("X-Echo")
    return field.decode()


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A fresh o+x directory under /tmp (pytest's tmp_path is 0700, P6)."""
    path = make_public_dir("spf-milter-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_delivers_the_message_with_the_milter_header(
    echo_postfix: PostfixInstance,
) -> None:
    result = send(
        echo_postfix.port,
        helo="client.example.org",
        mail_from="sender@example.org",
        rcpt_to=["rcpt@dest.example"],
        headers={"Subject": "fixture: plain delivery"},
    )

    assert result.accepted, result
    delivery = echo_postfix.wait_for_delivery(message_id=result.message_id)
    assert delivery.queue_id == result.queue_id
    assert echo_header(delivery) == (
        "X-Echo: client=127.0.0.1 helo=client.example.org"
        f" from=<sender@example.org> auth= i={result.queue_id}"
    )
    assert delivery.message["Subject"] == "fixture: plain delivery"
    assert (delivery.sender, delivery.recipients) == (
        "sender@example.org",
        ("rcpt@dest.example",),
    )


@pytest.mark.parametrize("client_ip", ["192.0.2.10", "2001:db8::25"])
def test_xclient_claimed_address_reaches_the_milter(
    echo_postfix: PostfixInstance, echo_milter: EchoMilter, client_ip: str
) -> None:
    result = send(echo_postfix.port, client_ip=client_ip, helo="mail.example.net")

    assert str(result.xclient) == "220 mta.test.example ESMTP Postfix"
    assert result.queue_id is not None, result
    delivery = echo_postfix.wait_for_delivery(message_id=result.message_id)
    assert echo_header(delivery).startswith(
        f"X-Echo: client={client_ip} helo=mail.example.net "
    )
    connect = echo_milter.event(result.queue_id, "connect")
    assert connect["hostaddr"][0] == client_ip
    assert connect["hostname"] == f"[{client_ip}]"


def test_ipv6_listener_serves_clients_on_loopback(
    echo_postfix: PostfixInstance,
) -> None:
    if not echo_postfix.ipv6:
        pytest.skip("this host cannot bind ::1")

    result = send(echo_postfix.port, host="::1")

    delivery = echo_postfix.wait_for_delivery(message_id=result.message_id)
    assert echo_header(delivery).startswith("X-Echo: client=::1 ")


def test_rejected_recipient_leaves_the_others_delivered(
    echo_postfix: PostfixInstance,
) -> None:
    recipients = ["first@dest.example", "reject@dest.example", "last@other.example"]

    result = send(echo_postfix.port, rcpt_to=recipients)

    assert {rcpt: reply.code for rcpt, reply in result.rcpt.items()} == {
        "first@dest.example": 250,
        "reject@dest.example": 550,
        "last@other.example": 250,
    }
    assert result.rcpt["reject@dest.example"].text == "5.7.1 echo says no"
    assert result.accepted, result
    delivery = echo_postfix.wait_for_delivery(message_id=result.message_id)
    assert delivery.recipients == ("first@dest.example", "last@other.example")


def test_smtp_auth_shows_auth_authen_to_the_milter(
    postfix: PostfixInstance, echo_milter: EchoMilter
) -> None:
    postfix.reload(
        milter=echo_milter.socket.postfix,
        sasl_users={"alice@test.example": "secret"},
    )

    refused = send(postfix.port, auth=("alice@test.example", "wrong"))
    result = send(postfix.port, auth=("alice@test.example", "secret"))

    assert str(refused.auth).startswith("535 5.7.8 ")
    assert refused.mail is None
    assert str(result.auth) == "235 2.7.0 Authentication successful"
    delivery = postfix.wait_for_delivery(message_id=result.message_id)
    assert " auth=alice@test.example " in echo_header(delivery)


def test_milter_down_gives_451_at_mail_from(
    postfix: PostfixInstance, public_dir: Path
) -> None:
    throwaway = start_echo_milter(MilterSocket.inet(), public_dir)
    postfix.reload(milter=throwaway.socket.postfix)
    assert send(postfix.port).accepted

    throwaway.process.kill()  # SIGKILL: no M1 delay
    result = send(postfix.port)

    assert result.mail is not None
    assert str(result.mail) == "451 4.7.1 Service unavailable - try again later"
    assert result.end_of_data is None


def test_milter_on_a_loopback_port(postfix: PostfixInstance, public_dir: Path) -> None:
    milter = start_echo_milter(MilterSocket.inet(), public_dir)
    try:
        postfix.reload(milter=milter.socket.postfix)

        result = send(postfix.port)

        delivery = postfix.wait_for_delivery(message_id=result.message_id)
        assert echo_header(delivery).startswith("X-Echo: client=127.0.0.1 ")
    finally:
        milter.process.kill()


def test_delivery_keeps_header_fields_as_sent(postfix: PostfixInstance) -> None:
    headers: Headers = [
        ("Subject", "fixture: raw fields"),
        ("X-Folded", "first part\r\n\tsecond part"),
        ("X-Spaces", b"  two leading spaces"),
    ]

    result = send(postfix.port, headers=headers)

    delivery = postfix.wait_for_delivery(subject="fixture: raw fields")
    assert delivery.message["Message-ID"] == result.message_id
    assert delivery.raw_fields("x-folded") == [b"X-Folded: first part\n\tsecond part"]
    assert delivery.raw_fields("X-Spaces") == [b"X-Spaces:   two leading spaces"]
    assert delivery.header("X-Folded") == "first part\tsecond part"  # unfolded


def test_send_returns_rejections_instead_of_raising(postfix: PostfixInstance) -> None:
    result = send(postfix.port, mail_from="a b@example.org")

    assert str(result.mail) == "501 5.1.7 Bad sender address syntax"
    assert (result.rcpt, result.data, result.accepted) == ({}, None, False)


def test_instance_stops_cleanly_and_leaves_no_processes(
    echo_milter: EchoMilter,
) -> None:
    instance = PostfixInstance(milter=echo_milter.socket.postfix)
    with instance:
        result = send(instance.port)
        instance.wait_for_delivery(message_id=result.message_id)
        assert instance.queue_ids() == []
        assert instance.master_pid() is not None

    assert instance.processes() == set()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(instance.work_dir)], capture_output=True, check=False
    )
    assert leftovers.returncode == 1, leftovers.stdout
    assert not instance.work_dir.exists()


# What Postfix 3.7 (smtputf8_enable = yes, its default) passes to a milter's
# helo callback; NUL ends the name, TAB and bare CR become spaces.
HELO_PASSED_THROUGH = [
    pytest.param(b"a;b.example", "a;b.example", id="semicolon"),
    pytest.param(b"a(b).example", "a(b).example", id="parentheses"),
    pytest.param(b'"quoted"', '"quoted"', id="double-quotes"),
    pytest.param(b"a'b.example", "a'b.example", id="single-quote"),
    pytest.param(b"a b c", "a b c", id="spaces"),
    pytest.param(b"<a@b>", "<a@b>", id="angle-brackets"),
    pytest.param(b"a\\b.example", "a\\b.example", id="backslash"),
    pytest.param(b"a\x01b", "a\x01b", id="control-character"),
    pytest.param(b"a\tb.example", "a b.example", id="tab"),
    pytest.param(b"a\rb.example", "a b.example", id="bare-cr"),
    pytest.param(b"a\x00b.example", "a", id="nul"),
    pytest.param("\u00e9t\u00e9.example".encode(), "\u00e9t\u00e9.example", id="utf-8"),
    pytest.param(b"[192.0.2.1]", "[192.0.2.1]", id="address-literal"),
]


@pytest.mark.parametrize(("helo", "seen"), HELO_PASSED_THROUGH)
def test_postfix_passes_odd_helo_names_to_the_milter(
    echo_postfix: PostfixInstance, echo_milter: EchoMilter, helo: bytes, seen: str
) -> None:
    result = send(echo_postfix.port, helo=helo, esmtp=False)

    assert result.queue_id is not None, result
    assert echo_milter.event(result.queue_id, "helo")["helo"] == seen


def test_postfix_rejects_invalid_utf8_in_helo_itself(
    echo_postfix: PostfixInstance,
) -> None:
    result = send(echo_postfix.port, helo=b"\xff.example", esmtp=False)

    assert str(result.helo) == "500 5.5.2 Error: bad UTF-8 syntax"


# MAIL FROM as sent -> the milter's envfrom argument (the client's text,
# verbatim) and {mail_addr} (Postfix's parsed and requoted form).
MAIL_FROM_PASSED_THROUGH = [
    pytest.param(b"", "<>", "", id="null-sender"),
    pytest.param(
        b"a(c)@example.org", "<a(c)@example.org>", "a@example.org", id="comment"
    ),
    pytest.param(
        b'"a;b"@example.org', '<"a;b"@example.org>', '"a;b"@example.org', id="quoted"
    ),
    pytest.param(
        b"a\x01b@example.org", "<a\x01b@example.org>", '"a\x01b"@example.org', id="ctl"
    ),
    pytest.param(
        b"postmaster", "<postmaster>", "postmaster@mta.test.example", id="bare"
    ),
    pytest.param(
        b"@a.example:c@d.example", "<@a.example:c@d.example>", "c@d.example", id="route"
    ),
    pytest.param(b"a@b@c.example", "<a@b@c.example>", '"a@b"@c.example', id="two-at"),
    pytest.param(
        b"a\\b@example.org", "<a\\b@example.org>", "ab@example.org", id="backslash"
    ),
    pytest.param(
        "\u00e9@example.org".encode(),
        "<\u00e9@example.org>",
        "\u00e9@example.org",
        id="utf-8",
    ),
]


@pytest.mark.parametrize(
    ("mail_from", "argument", "mail_addr"), MAIL_FROM_PASSED_THROUGH
)
def test_postfix_passes_odd_senders_to_the_milter(
    echo_postfix: PostfixInstance,
    echo_milter: EchoMilter,
    mail_from: bytes,
    argument: str,
    mail_addr: str,
) -> None:
    result = send(echo_postfix.port, mail_from=mail_from)

    assert result.queue_id is not None, result
    event = echo_milter.event(result.queue_id, "mail")
    assert (event["mail_from"], event["macros"]["{mail_addr}"]) == (argument, mail_addr)


@pytest.mark.parametrize(
    ("mail_from", "reply"),
    [
        pytest.param(
            b"a;b@example.org", "501 5.1.7 Bad sender address syntax", id="semicolon"
        ),
        pytest.param(
            b"a b@example.org", "501 5.1.7 Bad sender address syntax", id="space"
        ),
        pytest.param(
            b'a"b@example.org', "501 5.1.7 Bad sender address syntax", id="lone-quote"
        ),
        pytest.param(
            b"a@b;c.example",
            "501 5.1.7 Bad sender address syntax",
            id="domain-semicolon",
        ),
        pytest.param(
            "a@\u00e9.example".encode(),
            "501 5.1.7 Bad sender address syntax",
            id="utf-8-domain",
        ),
        pytest.param(
            b"\xff@example.org", "500 5.5.2 Error: bad UTF-8 syntax", id="invalid-utf-8"
        ),
    ],
)
def test_postfix_rejects_some_senders_itself(
    echo_postfix: PostfixInstance, mail_from: bytes, reply: str
) -> None:
    result = send(echo_postfix.port, mail_from=mail_from)

    assert str(result.mail) == reply
