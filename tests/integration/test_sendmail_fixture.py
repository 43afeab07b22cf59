"""The Sendmail fixture itself: a real Sendmail 8.17 in a sandbox, proved with
the echo milter.

Besides proving the fixture (start, stop, no process left, the sandbox not
leaking), these pin down what Sendmail hands a milter: the client address
(an IPv6 client is ``IPv6:0:0:0:0:0:0:0:1`` in Sendmail's own Received:
field, and ``::1`` to the milter), the queue id ``i`` from MAIL on, and
``{auth_authen}`` after SMTP AUTH, with no macro settings.
"""

from __future__ import annotations

import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.common import make_public_dir
from mta.delivery import Delivery
from mta.echo import EchoMilter, start_echo_milter
from mta.milterprocess import MilterSocket
from mta.sendmail import SendmailInstance
from mta.sendmailconf import HOSTNAME
from mta.sendmaildist import SendmailDist
from mta.smtp import send

pytestmark = pytest.mark.integration

START_LIMIT = 2.0  # seconds; S1's stall would make it 60 s


def echo_header(delivery: Delivery) -> str:
    (field,) = delivery.raw_fields("X-Echo")
    return field.decode()


@pytest.fixture
def echo_sendmail(
    sendmail_session: SendmailInstance, echo_milter: EchoMilter
) -> SendmailInstance:
    """The session's Sendmail with the echo milter as its only non-default."""
    sendmail_session.reconfigure(milter=echo_milter.socket)
    return sendmail_session


@pytest.fixture
def public_dir() -> Iterator[Path]:
    path = make_public_dir("spf-milter-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_delivers_with_the_milter_header_and_the_queue_id(
    echo_sendmail: SendmailInstance, echo_milter: EchoMilter
) -> None:
    result = send(
        echo_sendmail.port,
        source="127.0.0.10",
        helo="client.example.org",
        mail_from="sender@example.org",
        rcpt_to=["one@dest.example", "two@other.example"],
        headers={"Subject": "sendmail fixture: plain delivery"},
    )

    assert str(result.greeting).startswith(f"220 {HOSTNAME} ESMTP Sendmail 8.17")
    assert result.accepted, result
    assert result.queue_id is not None
    delivery = echo_sendmail.wait_for_delivery(message_id=result.message_id)
    assert delivery.queue_id == result.queue_id
    assert echo_header(delivery) == (
        "X-Echo: client=127.0.0.10 helo=client.example.org"
        f" from=<sender@example.org> auth= i={result.queue_id}"
    )
    assert delivery.sender == "sender@example.org"
    assert sorted(delivery.recipients) == ["one@dest.example", "two@other.example"]
    # Unlike Postfix, Sendmail has the queue id by MAIL FROM.
    mail = echo_milter.event(result.queue_id, "mail")
    assert mail["macros"]["{mail_addr}"] == "sender@example.org"


def test_ipv6_client_is_ipv6_prefixed_in_received_and_plain_to_the_milter(
    echo_sendmail: SendmailInstance, echo_milter: EchoMilter
) -> None:
    if not echo_sendmail.ipv6:
        pytest.skip("this host cannot bind ::1")

    result = send(echo_sendmail.port, host="::1")

    assert result.queue_id is not None, result
    delivery = echo_sendmail.wait_for_delivery(message_id=result.message_id)
    assert b"[IPv6:0:0:0:0:0:0:0:1]" in delivery.raw_fields("Received")[0]
    connect = echo_milter.event(result.queue_id, "connect")
    assert (connect["family"], connect["hostaddr"][0]) == (socket.AF_INET6, "::1")
    assert echo_header(delivery).startswith("X-Echo: client=::1 ")


def test_smtp_auth_shows_auth_authen_to_the_milter(
    sendmail: SendmailInstance, echo_milter: EchoMilter
) -> None:
    sendmail.reconfigure(milter=echo_milter.socket, sasl_users={"alice": "secret"})

    refused = send(sendmail.port, auth=("alice", "wrong"))
    result = send(sendmail.port, auth=("alice", "secret"))

    assert refused.auth is not None
    assert refused.auth.code == 535
    assert refused.mail is None
    assert str(result.auth) == "235 2.0.0 OK Authenticated"
    delivery = sendmail.wait_for_delivery(message_id=result.message_id)
    assert " auth=alice " in echo_header(delivery)


def test_rejected_recipient_leaves_the_others_delivered(
    echo_sendmail: SendmailInstance,
) -> None:
    recipients = ["first@dest.example", "reject@dest.example", "last@other.example"]

    result = send(echo_sendmail.port, rcpt_to=recipients)

    assert {rcpt: reply.code for rcpt, reply in result.rcpt.items()} == {
        "first@dest.example": 250,
        "reject@dest.example": 550,
        "last@other.example": 250,
    }
    assert result.rcpt["reject@dest.example"].text == (
        "5.7.1 <reject@dest.example>... echo says no"
    )
    delivery = echo_sendmail.wait_for_delivery(message_id=result.message_id)
    assert sorted(delivery.recipients) == ["first@dest.example", "last@other.example"]


def test_milter_on_a_loopback_port_then_down(
    sendmail: SendmailInstance, public_dir: Path
) -> None:
    throwaway = start_echo_milter(MilterSocket.inet(), public_dir)
    try:
        sendmail.reconfigure(milter=throwaway.socket)
        result = send(sendmail.port)
        delivery = sendmail.wait_for_delivery(message_id=result.message_id)
        assert echo_header(delivery).startswith("X-Echo: client=127.0.0.1 ")
    finally:
        throwaway.process.kill()  # SIGKILL: no M1 delay

    result = send(sendmail.port)

    assert str(result.mail) == "451 4.3.2 Please try again later"
    assert result.end_of_data is None


def _host_state() -> tuple[str, bytes, bytes, str | None]:
    """What the sandbox changes for sendmail and must never change for us."""
    dev_log = Path("/dev/log")
    return (
        socket.gethostname(),
        Path("/etc/hosts").read_bytes(),
        Path("/etc/resolv.conf").read_bytes(),
        str(dev_log.readlink()) if dev_log.is_symlink() else None,
    )


def test_instance_starts_fast_and_stops_leaving_nothing(
    sendmail_dist: SendmailDist, echo_milter: EchoMilter
) -> None:
    host_before = _host_state()
    instance = SendmailInstance(sendmail_dist, milter=echo_milter.socket.libmilter)
    started = time.monotonic()
    with instance:
        start_time = time.monotonic() - started
        assert _host_state() == host_before  # S1-S3 stay inside the sandbox
        result = send(instance.port)
        delivery = instance.wait_for_delivery(message_id=result.message_id)
        daemon = instance.process
        assert daemon is not None
        # S5: the PID we hold is sendmail's own, as its pid file says.
        assert instance.layout.pid_file.read_text().split()[0] == str(daemon.pid)
        assert daemon.pid in instance.processes()
        assert instance.queued() == []
        # The mailer runs as nobody (U=), the daemon as root.
        assert delivery.path.stat().st_uid == pwd.getpwnam("nobody").pw_uid

    assert start_time < START_LIMIT, f"start took {start_time:.2f} s"
    assert instance.processes() == set()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(instance.work_dir)], capture_output=True, check=False
    )
    assert leftovers.returncode == 1, leftovers.stdout
    assert not instance.work_dir.exists()
    assert _host_state() == host_before
