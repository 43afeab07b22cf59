"""The filters that read our fields, run for real on delivered messages.

Every case of ``CASES`` goes once through each MTA, and the real readers
then read what was delivered:

* Postfix runs three milters in README.md's order: ours, a stand-in for
  OpenDKIM (``mta.stamp_milter``, writing an Authentication-Results field
  with our authserv-id, as OpenDKIM on the same host does) and the real
  OpenDMARC 1.4.2 (``mta.opendmarc``). Clients are claimed documentation
  addresses (XCLIENT): SpamAssassin trusts every 127/8 relay.
* Sendmail runs ours (README.md's one line); each delivered message is then
  shown to the same OpenDMARC as a next milter would see it
  (``mta.replay``). Its clients are real loopback sources, and Sendmail
  itself refuses the hostile HELO names (those cases are skipped there).

OpenDMARC runs in a private mount namespace whose resolv.conf names the
test DNS server, on port 53 of a loopback address. One Perl process per
MTA runs SpamAssassin 4.0.1's SPF plugin (``mta.spamassassin``, DNS off)
over all delivered messages, in both ``use_newest_received_spf_header``
modes, with and without a trusted relay's Received: above the MTA's. Each
test checks one case: the SPF rules SpamAssassin scored, OpenDMARC's
``dmarc=`` verdict and the SPF result in its history, and that ours is
the only Received-SPF left.

To add a case, add a row to ``CASES`` (or ``CASES_WITHOUT_RECEIVED_SPF``,
Postfix only) and, if it needs them, records to ``build_zone``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.headerparse import parse_received_spf
from helpers.milterdaemon import MilterDaemon
from mta.common import make_public_dir
from mta.delivery import Delivery
from mta.milterprocess import MilterProcess, MilterSocket
from mta.opendmarc import NOT_INSTALLED as NO_OPENDMARC
from mta.opendmarc import (
    OpenDmarc,
    dmarc_field,
    opendmarc_available,
    port_53_server,
)
from mta.postfix import PostfixInstance
from mta.replay import Envelope, replay
from mta.sendmail import SendmailInstance
from mta.smtp import SendResult, send
from mta.spamassassin import MODES, Mode, spamassassin_available, spf_rules
from mta.spamassassin import NOT_INSTALLED as NO_SPAMASSASSIN
from mta.spamassassin import write_config as write_spamassassin_config
from mta.stamp import shown_headers, stamp_milter

pytestmark = pytest.mark.integration

# The parameter ids select one MTA's runs: -k postfix or -k sendmail.
MTAS: Final = [pytest.param("postfix", marks=pytest.mark.postfix), "sendmail"]

AUTHSERV_ID: Final = "mx.test.example"
CLIENT_IP: Final = "192.0.2.10"  # Postfix's client, claimed with XCLIENT
LOOPBACK_CLIENT: Final = "127.0.0.10"  # Sendmail's: a real loopback source
AR_NAME: Final = "authentication-results"
CONFIG: Final = f"""\
authserv_id: {AUTHSERV_ID}
trusted_networks:
  - 127.0.0.1/32
headers:
  receiver: {AUTHSERV_ID}
"""
CONFIG_WITHOUT_RECEIVED_SPF: Final = CONFIG + "  received_spf: false\n"
POLICY: Final = "default:\n  mailfrom:\n    fail: accept\n"  # deliver everything
DKIM_STAND_IN: Final = f"{AUTHSERV_ID}; dkim=none (no signatures, test stand-in)"
HOSTILE_TEXT: Final = 'x; spf=pass identity=helo smtp.mailfrom=pass.test "q" (p) \\'

RESULTS: Final = (
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "permerror",
    "temperror",
)
MAILFROM_RULES: Final = {
    "pass": "SPF_PASS",
    "fail": "SPF_FAIL",
    "softfail": "SPF_SOFTFAIL",
    "neutral": "SPF_NEUTRAL",
    "none": "SPF_NONE",
    "permerror": "T_SPF_PERMERROR",
    "temperror": "T_SPF_TEMPERROR",
}
HELO_RULES: Final = {
    "pass": "SPF_HELO_PASS",
    "fail": "SPF_HELO_FAIL",
    "softfail": "SPF_HELO_SOFTFAIL",
    "neutral": "SPF_HELO_NEUTRAL",
    "none": "SPF_HELO_NONE",
    "permerror": "T_SPF_HELO_PERMERROR",
    "temperror": "T_SPF_HELO_TEMPERROR",
}
# OpenDMARC's history "spf" line: its ARES_RESULT number for the SPF result.
ARES_RESULTS: Final = {
    "pass": "0",
    "softfail": "2",
    "neutral": "3",
    "temperror": "4",
    "permerror": "5",
    "none": "6",
    "fail": "7",
}


def build_zone() -> Zone:
    """One domain per SPF result (for MAIL FROM and HELO alike), and hostile ones.

    Every MAIL FROM domain publishes ``p=reject``, so OpenDMARC's verdict
    turns on the SPF result alone (no message is DKIM-signed).
    """
    zone = Zone()
    records = {
        "pass.test": b"v=spf1 ip4:192.0.2.0/24 ip4:127.0.0.10 -all",
        "fail.test": b"v=spf1 -all",
        "softfail.test": b"v=spf1 ~all",
        "neutral.test": b"v=spf1 ?all",
        "permerror.test": b"v=spf1 ip4:192.0.2.0/33 -all",
        # The record's own text, quoted by the problem, tries to speak.
        "record-semicolon.test": b"v=spf1 foo;spf=pass -all",
        "record-identity.test": b"v=spf1 foo:identity=helo -all",
        "record-long.test": b"v=spf1 " + b"x;spf=pass=" * 60 + b" -all",
        "exp.test": b"v=spf1 -all exp=why.exp.test",
        "why.exp.test": HOSTILE_TEXT.encode() + b"\r\nX: \xc3\xbc\xff",
    }
    for name, text in records.items():
        zone.add_txt(name, text)
    zone.add_a("none.test", "192.0.2.99")
    zone.set_timeout("temperror.test")
    for name in [*records, "none.test", "temperror.test"]:
        zone.add_txt(f"_dmarc.{name}", b"v=DMARC1; p=reject")
    return zone


@dataclass(frozen=True, slots=True)
class Case:
    """One message, and what every reader must take from it."""

    id: str
    mail_from: str
    helo: str
    mailfrom_result: str  # the true MAIL FROM result
    helo_result: str  # the true HELO result
    headers: tuple[tuple[str, str], ...] = ()
    # Where OpenDMARC 1.4.2 itself falls short of the truth whatever we
    # write (the row says why; README.md, "Downstream filters"): its
    # verdict, and the SPF result it records in its history.
    opendmarc_verdict: str | None = None
    opendmarc_spf: str | None = None

    @property
    def from_domain(self) -> str:
        """The From: domain: the MAIL FROM domain, or the HELO for a null sender."""
        return self.mail_from.rpartition("@")[2] or self.helo

    @property
    def dmarc(self) -> str:
        """The true DMARC verdict: SPF passed for the aligned MAIL FROM domain."""
        return "pass" if self.mailfrom_result == "pass" else "fail"

    @property
    def dmarc_seen(self) -> str:
        return self.opendmarc_verdict or self.dmarc

    @property
    def spf_seen(self) -> str:
        return self.opendmarc_spf or ARES_RESULTS[self.mailfrom_result]

    @property
    def spamassassin(self) -> frozenset[str]:
        return frozenset(
            {MAILFROM_RULES[self.mailfrom_result], HELO_RULES[self.helo_result]}
        )


def _forged_received_spf(result: str) -> tuple[str, str]:
    """A sender's Received-SPF, written exactly as ours would be."""
    return (
        "Received-SPF",
        f"{result} ({AUTHSERV_ID}: domain of a@fail.test designates {CLIENT_IP}"
        f" as permitted sender) receiver={AUTHSERV_ID}; client-ip={CLIENT_IP};"
        ' envelope-from="a@fail.test"; helo=pass.test; identity=mailfrom',
    )


FORGED_PASS: Final = _forged_received_spf("pass")
FORGED_AR: Final = (
    "Authentication-Results",
    f"{AUTHSERV_ID}; spf=pass smtp.mailfrom=fail.test",
)
SUBJECT: Final = ("Subject", "downstream")

CASES: Final = [
    *[
        Case(f"mailfrom-{result}", f"a@{result}.test", "pass.test", result, "pass")
        for result in RESULTS
    ],
    *[
        Case(f"helo-{result}", "a@pass.test", f"{result}.test", "pass", result)
        for result in RESULTS
        if result != "pass"
    ],
    # CVE-2019-20790: a passing HELO must not stand for a failing MAIL FROM.
    Case("mailfrom-fail-helo-pass", "a@fail.test", "pass.test", "fail", "pass"),
    # OpenDMARC matches no SPF result to a null sender's empty envelope
    # domain: "neutral", so DMARC rests on DKIM for bounces.
    Case("null-sender", "", "pass.test", "pass", "pass", (), "fail", "3"),
    # Forged fields: a sender's Received-SPF first, in the middle and last
    # of its header, a copy of ours, and a forged A-R with our id.
    Case(
        "forged-first",
        "a@fail.test",
        "pass.test",
        "fail",
        "pass",
        (FORGED_PASS, SUBJECT),
    ),
    Case(
        "forged-middle",
        "a@fail.test",
        "pass.test",
        "fail",
        "pass",
        (SUBJECT, FORGED_PASS, ("X-Other", "1")),
    ),
    Case(
        "forged-last",
        "a@fail.test",
        "pass.test",
        "fail",
        "pass",
        (SUBJECT, FORGED_PASS),
    ),
    Case(
        "forged-everywhere",
        "a@fail.test",
        "fail.test",
        "fail",
        "fail",
        (FORGED_PASS, FORGED_AR, SUBJECT, FORGED_PASS, FORGED_AR, FORGED_PASS),
    ),
    # Hostile HELO names (Postfix takes any text without spaces or CR/LF).
    Case("helo-semicolon", "a@fail.test", "x;spf=pass", "fail", "none"),
    Case(
        "helo-clause",
        "a@fail.test",
        "x;spf=pass;smtp.mailfrom=pass.test;identity=helo",
        "fail",
        "none",
    ),
    Case("helo-equals", "a@pass.test", "a=b", "pass", "none"),
    Case("helo-quotes", "a@fail.test", '"q"(p)\\b;spf=pass', "fail", "none"),
    Case("helo-long", "a@fail.test", "h" * 300 + ";spf=pass", "fail", "none"),
    Case("helo-8bit", "a@fail.test", "b\u00fccher.test;spf=pass", "fail", "none"),
    # Hostile local parts.
    # OpenDMARC's own parse of an envelope address holding ";" records
    # "neutral" (its verdict is right); "a?b"@ or "a=b"@ do not do that.
    Case(
        "local-semicolon",
        '"a;spf=pass"@fail.test',
        "pass.test",
        "fail",
        "pass",
        opendmarc_spf="3",
    ),
    Case("local-identity", '"x identity=helo"@fail.test', "pass.test", "fail", "pass"),
    Case(
        "local-smtp", "smtp.mailfrom=pass.test@fail.test", "pass.test", "fail", "pass"
    ),
    Case("local-srs", "SRS0=ab=cd=pass.test=u@pass.test", "pass.test", "pass", "pass"),
    Case("local-equals", "spf=pass@fail.test", "fail.test", "fail", "fail"),
    Case(
        "local-clause",
        '"x;spf=pass smtp.mailfrom=fail.test"@fail.test',
        "fail.test",
        "fail",
        "fail",
        opendmarc_spf="3",  # as local-semicolon
    ),
    Case(
        "local-clause-atom",
        "spf=pass.smtp.mailfrom=fail.test@fail.test",
        "fail.test",
        "fail",
        "fail",
    ),
    Case(
        "local-clause-space",
        '"x spf=pass smtp.mailfrom=fail.test"@fail.test',
        "fail.test",
        "fail",
        "fail",
    ),
    Case("local-quotes", '"(p)\\\\ \\"q\\""@fail.test', "pass.test", "fail", "pass"),
    # Hostile record text and explanation.
    Case(
        "record-semicolon-helo",
        "a@pass.test",
        "record-semicolon.test",
        "pass",
        "permerror",
    ),
    Case(
        "record-semicolon-mailfrom",
        "a@record-semicolon.test",
        "pass.test",
        "permerror",
        "pass",
    ),
    Case("record-identity", "a@record-identity.test", "pass.test", "permerror", "pass"),
    Case("record-long", "a@pass.test", "record-long.test", "pass", "permerror"),
    Case("explanation", "a@exp.test", "pass.test", "fail", "pass"),
]

# With headers.received_spf off, only the A-R carries our results.
CASES_WITHOUT_RECEIVED_SPF: Final = [
    Case(
        "no-rspf-forged",
        "a@fail.test",
        "pass.test",
        "fail",
        "pass",
        (FORGED_PASS, SUBJECT),
    ),
    # OpenDMARC uses an A-R pass only for an smtp.mailfrom it can match to
    # the envelope domain, never for our full address: without our
    # Received-SPF it has no SPF result at all (history -1).
    Case("no-rspf-pass", "a@pass.test", "pass.test", "pass", "pass", (), "fail"),
]


@dataclass(frozen=True, slots=True)
class Read:
    """What the readers made of one delivered message."""

    delivery: Delivery
    spamassassin: dict[Mode, frozenset[str]]
    dmarc_field: str
    history: dict[str, list[str]]


Reads = dict[str, Read | str]  # by case id; a str says why the MTA refused it


@dataclass(frozen=True, slots=True)
class Stack:
    """The test DNS server, our daemon, OpenDKIM's stand-in and OpenDMARC."""

    work_dir: Path
    dns: DnsServer
    daemon: MilterDaemon
    stamp: MilterProcess
    dmarc: OpenDmarc


def unavailable(reason: str) -> NoReturn:
    """Skip, or under CI fail (as the MTA fixtures do): CI must run these."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: these tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    for available, reason in (
        (opendmarc_available(), NO_OPENDMARC),
        (spamassassin_available(), NO_SPAMASSASSIN),
    ):
        if not available:
            unavailable(reason)
    work_dir = make_public_dir("spf-milter-downstream-")
    dns = port_53_server(build_zone())
    daemon = MilterDaemon(
        work_dir,
        config=CONFIG,
        policy=POLICY,
        nameserver=f"{dns.addresses[0]}:53",
        unix_socket=True,
    )
    stamp = stamp_milter(work_dir, "stamp", f"1:Authentication-Results:{DKIM_STAND_IN}")
    dmarc = OpenDmarc(
        work_dir,
        authserv_id=AUTHSERV_ID,
        trusted_authserv_ids=AUTHSERV_ID,
        nameserver=dns.addresses[0],
    )
    try:
        with daemon, stamp, dmarc:
            yield Stack(work_dir, dns, daemon, stamp, dmarc)
            assert "Traceback" not in daemon.log(), daemon.log()
    finally:
        dns.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


def _headers(case: Case) -> list[tuple[str, str]]:
    return [("From", f"a@{case.from_domain}"), *(case.headers or [SUBJECT])]


def _delivered_results(delivery: Delivery) -> list[str]:
    return [
        raw.decode("ascii", "replace").split(":", 1)[1]
        for raw in delivery.raw_fields("Authentication-Results")
    ]


def _read_spamassassin(
    work_dir: Path, deliveries: dict[str, Delivery]
) -> dict[str, dict[Mode, frozenset[str]]]:
    config_dir = work_dir / "spamassassin"
    write_spamassassin_config(config_dir)
    hits = spf_rules([d.path for d in deliveries.values()], config_dir)
    return {
        case_id: {mode: hits[delivery.path, mode] for mode in MODES}
        for case_id, delivery in deliveries.items()
    }


@pytest.fixture(scope="module")
def postfix_reads(stack: Stack, postfix_session: PostfixInstance) -> Iterator[Reads]:
    """Every case through Postfix, with OpenDMARC the third milter."""
    # README.md's order: ours first, OpenDKIM's stand-in, OpenDMARC.
    chain = [stack.daemon.socket_path, stack.stamp.socket.path, stack.dmarc.socket.path]
    postfix_session.reset(milter=", ".join(f"unix:{path}" for path in chain))

    def sent(case: Case) -> SendResult:
        result = send(
            postfix_session.port,
            client_ip=CLIENT_IP,
            helo=case.helo,
            mail_from=case.mail_from,
            rcpt_to=["user@dest.test"],
            headers=_headers(case),
        )
        assert result.accepted, (case, result)
        return result

    try:
        results = {case.id: sent(case) for case in CASES}
        stack.daemon.rewrite_config(CONFIG_WITHOUT_RECEIVED_SPF)
        assert "reloaded" in stack.daemon.reload()
        results |= {case.id: sent(case) for case in CASES_WITHOUT_RECEIVED_SPF}
        stack.daemon.rewrite_config(CONFIG)
        assert "reloaded" in stack.daemon.reload()
        deliveries = {
            case_id: postfix_session.wait_for_delivery(message_id=result.message_id)
            for case_id, result in results.items()
        }
        hits = _read_spamassassin(stack.work_dir / "postfix", deliveries)
        yield {
            case_id: Read(
                delivery,
                hits[case_id],
                dmarc_field(_delivered_results(delivery)),
                stack.dmarc.history(delivery.queue_id),
            )
            for case_id, delivery in deliveries.items()
        }
    finally:
        postfix_session.reset()


@pytest.fixture(scope="module")
def sendmail_reads(stack: Stack, sendmail_session: SendmailInstance) -> Iterator[Reads]:
    """Every case through Sendmail; OpenDMARC is shown each delivered message.

    Sendmail has no XCLIENT: the client is a loopback address, which
    SpamAssassin always counts as trusted and internal, so there the
    sender's own fields are only kept from it by our removing them.
    """
    sendmail_session.reconfigure(milter=MilterSocket.unix(stack.daemon.socket_path))
    refused: dict[str, str] = {}
    results: dict[str, SendResult] = {}
    for case in CASES:
        result = send(
            sendmail_session.port,
            source=LOOPBACK_CLIENT,
            helo=case.helo,
            mail_from=case.mail_from,
            rcpt_to=["user@dest.test"],
            headers=_headers(case),
        )
        if result.accepted:
            results[case.id] = result
        elif result.helo is not None and result.helo.code == 501:  # hostile HELO
            refused[case.id] = f"Sendmail refuses its HELO: {result.helo}"
        else:
            raise AssertionError(f"{case.id}: Sendmail refused it: {result}")
    try:
        deliveries = {
            case_id: sendmail_session.wait_for_delivery(message_id=result.message_id)
            for case_id, result in results.items()
        }
        hits = _read_spamassassin(stack.work_dir / "sendmail", deliveries)
        reads: Reads = dict(refused)
        for case in CASES:
            if case.id in deliveries:
                reads[case.id] = _replayed(stack, case, deliveries[case.id], hits)
        yield reads
    finally:
        sendmail_session.reset()


def _replayed(
    stack: Stack,
    case: Case,
    delivery: Delivery,
    hits: dict[str, dict[Mode, frozenset[str]]],
) -> Read:
    envelope = Envelope(LOOPBACK_CLIENT, case.helo, case.mail_from, "user@dest.test")
    changes = replay(stack.dmarc.socket, delivery, envelope)
    added = [change.value for change in changes if change.name.lower() == AR_NAME]
    return Read(
        delivery,
        hits[case.id],
        dmarc_field(added),
        stack.dmarc.history(delivery.queue_id),
    )


@pytest.fixture(params=MTAS)
def reads(request: pytest.FixtureRequest) -> Reads:
    """Each MTA's reads in turn."""
    value: Reads = request.getfixturevalue(f"{request.param}_reads")
    return value


def _read(reads: Reads, case: Case) -> Read:
    read = reads[case.id]
    if isinstance(read, str):
        pytest.skip(read)
    return read


def _header(read: Read) -> str:
    return read.delivery.raw_header.decode("ascii", "replace")


IDS: Final = [case.id for case in CASES]
CASES_BY_ID: Final = {case.id: case for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_spamassassin_scores_the_true_results(reads: Reads, case: Case) -> None:
    read = _read(reads, case)
    assert read.spamassassin == dict.fromkeys(MODES, case.spamassassin), _header(read)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_opendmarc_gives_the_true_verdict(reads: Reads, case: Case) -> None:
    read = _read(reads, case)
    assert f" dmarc={case.dmarc_seen} " in read.dmarc_field, _header(read)
    assert read.dmarc_field.endswith(f" header.from={case.from_domain}")
    assert read.history.get("spf") == [case.spf_seen], read.history


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_ours_is_the_only_received_spf_delivered(reads: Reads, case: Case) -> None:
    read = _read(reads, case)
    received = read.delivery.raw_fields("Received-SPF")
    assert len(received) == 1, _header(read)
    value = received[0].decode("ascii").split(":", 1)[1].strip()
    parsed = parse_received_spf(value)
    assert (parsed.result, parsed.pairs["receiver"]) == (
        case.mailfrom_result,
        AUTHSERV_ID,
    )


@pytest.mark.postfix
@pytest.mark.parametrize(
    "case", CASES_WITHOUT_RECEIVED_SPF, ids=[c.id for c in CASES_WITHOUT_RECEIVED_SPF]
)
def test_without_our_received_spf_no_sender_field_decides(
    postfix_reads: Reads, case: Case
) -> None:
    read = _read(postfix_reads, case)
    assert read.delivery.raw_fields("Received-SPF") == [], _header(read)
    assert f" dmarc={case.dmarc_seen} " in read.dmarc_field, _header(read)
    # SpamAssassin reads the HELO result (the A-R's last clause) and no
    # MAIL FROM result: it would check that itself, given the DNS.
    expected = frozenset({HELO_RULES[case.helo_result]})
    assert read.spamassassin == dict.fromkeys(MODES, expected), _header(read)


@pytest.mark.postfix
def test_a_later_milters_field_with_our_id_is_kept(postfix_reads: Reads) -> None:
    read = _read(postfix_reads, CASES_BY_ID["forged-everywhere"])
    fields = [
        " ".join(raw.decode().split(":", 1)[1].split())
        for raw in read.delivery.raw_fields("Authentication-Results")
    ]
    assert DKIM_STAND_IN in fields
    ours = [f for f in fields if f.startswith(f"{AUTHSERV_ID}; spf=")]
    assert ours == [
        f"{AUTHSERV_ID}; spf=fail smtp.mailfrom=a@fail.test;"
        " spf=fail smtp.helo=fail.test"
    ]


@pytest.mark.postfix
def test_a_milter_sees_an_earlier_milters_fields_as_the_clients(
    postfix_session: PostfixInstance,
) -> None:
    # Why README.md puts spf-milter first: Postfix hides its own Received:
    # from every milter, shows each the fields the milters before it added,
    # and puts a field inserted at index 1 (OpenDKIM's and OpenDMARC's
    # place) right below that Received:, ahead of the client's first field,
    # and an appended one after the client's last. So a milter cannot tell
    # an earlier milter's field from one the client wrote in that place.
    work_dir = make_public_dir("spf-milter-order-")
    inserted = f"{AUTHSERV_ID}; dkim=pass header.d=inserted.test"
    appended = f"{AUTHSERV_ID}; dkim=pass header.d=appended.test"
    forged = f"{AUTHSERV_ID}; dkim=pass header.d=forged.test"
    earlier = stamp_milter(
        work_dir,
        "earlier",
        f"1:Authentication-Results:{inserted}",
        f"append:Authentication-Results:{appended}",
    )
    later = stamp_milter(work_dir, "later")
    try:
        with earlier, later:
            sockets = [earlier.socket.postfix, later.socket.postfix]
            postfix_session.reset(milter=", ".join(sockets))
            result = send(
                postfix_session.port,
                client_ip=CLIENT_IP,
                helo="pass.test",
                mail_from="a@pass.test",
                rcpt_to=["user@dest.test"],
                headers=[("Authentication-Results", forged), SUBJECT],
            )
            delivery = postfix_session.wait_for_delivery(message_id=result.message_id)
            shown = shown_headers(work_dir, "later", delivery.queue_id)
    finally:
        postfix_session.reset()
        shutil.rmtree(work_dir, ignore_errors=True)
    names = [name for name, _ in shown]
    values = [value for _, value in shown]
    assert "Received" not in names
    # The client sent Message-ID (smtp.py puts it first), then its forgery.
    assert values[:3] == [inserted, result.message_id, forged]
    assert values[-1] == appended  # after Postfix's own Date: and From:
    delivered = [raw.split(b":", 1)[0] for raw in _fields(delivery)]
    assert delivered[:3] == [b"Return-Path", b"Received", b"Authentication-Results"]
    assert _fields(delivery)[2].endswith(inserted.encode())
    assert _fields(delivery)[-1].endswith(appended.encode())


def _fields(delivery: Delivery) -> list[bytes]:
    """The delivered header's fields, unfolded, in order."""
    unfolded = delivery.raw_header.replace(b"\n\t", b" ").replace(b"\n ", b" ")
    return [line for line in unfolded.split(b"\n") if line]
