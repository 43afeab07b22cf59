"""Faults: the milter killed mid-transaction, the DNS server restarting, a full disk.

Through the real daemon and a real MTA. Mail is never lost: while the
milter is gone the MTA answers 4xx and the client keeps the message; once
it is back, mail flows again.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.milterdaemon import MilterDaemon
from mta.common import Mta, make_public_dir
from mta.delivery import Delivery
from mta.milterprocess import MilterSocket
from mta.smtp import SmtpClient, build_message, send

pytestmark = pytest.mark.integration

ZONE = """\
$TTL 300
$ORIGIN example.net.
@        TXT "v=spf1 ip4:127.0.0.10/31 -all"
second   TXT "v=spf1 ip4:127.0.0.10/31 -all"
third    TXT "v=spf1 ip4:127.0.0.10/31 -all"
"""
CONFIG = "authserv_id: mx.test.example\ntrusted_networks: [127.0.0.1/32]\n"
POLICY = "default:\n  mailfrom:\n    fail: reject\n"
SOURCE = "127.0.0.10"
FAILING_SOURCE = "127.0.0.20"


@pytest.fixture
def work_dir() -> Iterator[Path]:
    directory = make_public_dir("spf-milter-faults-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _daemon(work_dir: Path, dns: DnsServer) -> MilterDaemon:
    return MilterDaemon(
        work_dir,
        config=CONFIG,
        policy=POLICY,
        nameserver=f"127.0.0.1:{dns.port}",
        unix_socket=True,
    )


def _delivered(mta: Mta, sender: str, source: str = SOURCE) -> Delivery:
    result = send(
        mta.port,
        source=source,
        helo="h.example.net",
        mail_from=sender,
        rcpt_to=["user@dest.test"],
    )
    assert result.accepted, result
    return mta.wait_for_delivery(message_id=result.message_id)


def test_milter_killed_mid_transaction_then_restarted(
    mta_session: Mta, work_dir: Path
) -> None:
    with DnsServer(Zone.from_text(ZONE)) as dns:
        daemon = _daemon(work_dir, dns)
        with daemon:
            mta_session.reconfigure(milter=MilterSocket.unix(daemon.socket_path))
            client = SmtpClient("127.0.0.1", mta_session.port, source=SOURCE)
            try:
                client.hello("h.example.net")
                assert client.mail("alice@example.net").code == 250
                assert client.rcpt("user@dest.test").code == 250
                daemon.signal(signal.SIGKILL)  # gone between RCPT and DATA
                message, _ = build_message(None, "Test body.\n")
                go_ahead, end = client.data(message)
            finally:
                client.close()
            final = end if go_ahead.code == 354 else go_ahead
            assert final is not None
            assert 400 <= final.code < 500, final  # the MTA's default action: 4xx
        assert daemon.socket_path.exists()  # SIGKILL left the socket file behind
        with daemon:  # the next start removes the stale socket and serves again
            delivery = _delivered(mta_session, "alice@example.net")
            assert delivery.raw_fields("Received-SPF")


def test_dns_server_restart_mid_run(mta_session: Mta, work_dir: Path) -> None:
    zone = Zone.from_text(ZONE)
    with DnsServer(zone) as dns:
        port = dns.port
        daemon = _daemon(work_dir, dns)
        with daemon:
            mta_session.reconfigure(milter=MilterSocket.unix(daemon.socket_path))
            assert (
                b"pass"
                in _delivered(mta_session, "a@example.net").raw_fields("Received-SPF")[
                    0
                ]
            )
            dns.stop()
            down = _delivered(mta_session, "a@second.example.net")
            assert down.raw_fields("Received-SPF")[0].split()[1] == b"temperror"
            with DnsServer(zone, port=port):
                back = _delivered(mta_session, "a@third.example.net")
                assert back.raw_fields("Received-SPF")[0].split()[1] == b"pass"
            assert daemon.process is not None
            assert daemon.process.poll() is None


def test_a_full_disk_for_logs_does_not_stop_mail(
    mta_session: Mta, work_dir: Path
) -> None:
    with DnsServer(Zone.from_text(ZONE)) as dns:
        daemon = _daemon(work_dir, dns)
        daemon.log_path = Path("/dev/full")  # every write to stderr fails: ENOSPC
        with daemon:
            mta_session.reconfigure(milter=MilterSocket.unix(daemon.socket_path))
            assert _delivered(mta_session, "alice@example.net").raw_fields(
                "Received-SPF"
            )
            refused = send(
                mta_session.port,
                source=FAILING_SOURCE,
                helo="h.example.net",
                mail_from="eve@example.net",
                rcpt_to=["user@dest.test"],
            )
            assert refused.rcpt["user@dest.test"].code == 550
            assert daemon.process is not None
            assert daemon.process.poll() is None
