"""What comes out of a transaction: typed verdicts, and the pure steps to them.

The verdicts the transaction flow (flow.py) answers with, which cannot be
malformed (a Reject carries a 5xx reply, a Defer a 4xx one, edits are
typed fields), and, given a transaction's envelope and the results of its
two identities: the policy decision for a recipient, the header fields to
add, and the log line of a decision. Kept apart from flow.py, which
sequences the steps. Pure: no pymilter, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from spf_milter.action import Accept, Defer, Quarantine, Reject, SmtpReply
from spf_milter.config import HeaderConfig
from spf_milter.headers import render_authentication_results, render_received_spf
from spf_milter.policy import Decision, Facts, Policy, decide
from spf_milter.session import Envelope, RecipientDecision
from spf_milter.spf import CheckResult, Identity
from spf_milter.spf.address import IPAddress
from spf_milter.spf.trace import printable
from spf_milter.verify import IdentityCheck, mail_from_sender

AUTHENTICATION_RESULTS: Final = "Authentication-Results"
RECEIVED_SPF: Final = "Received-SPF"


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field to add: ``name: value``."""

    name: str
    value: str

    def __str__(self) -> str:
        return f"{self.name}: {self.value}"


# The answer to an internal error, unless on_error says accept.
ERROR_REPLY: Final = SmtpReply(
    451, "4.3.0", "Temporary SPF milter error, try again later"
)


@dataclass(frozen=True, slots=True)
class Continue:
    """Go on with the SMTP dialogue."""


@dataclass(frozen=True, slots=True)
class AcceptMessage:
    """Accept the message as it is: no further milter step for it."""


CONTINUE: Final = Continue()
Verdict = Continue | AcceptMessage | Reject | Defer


@dataclass(frozen=True, slots=True)
class FieldRemoval:
    """Remove the ``index``-th (1-based) header field named ``name``."""

    name: str
    index: int


@dataclass(frozen=True, slots=True)
class MessageEdits:
    """What the end of a message changes in it, in the order to apply."""

    remove: tuple[FieldRemoval, ...] = ()  # the last index first
    add: tuple[HeaderField, ...] = ()  # top first
    quarantine: str | None = None


def recipient_domain(recipient: str) -> str:
    """Return the domain of an RCPT TO argument (``<user@example.org>``).

    A recipient without a domain (``<postmaster>``, RFC 5321 §4.1.1.3) has
    the empty domain, which the policy's default rule covers.
    """
    address = recipient.strip().removeprefix("<").removesuffix(">")
    _, at, domain = address.rpartition("@")
    return domain.rstrip(".").lower() if at else ""


def decide_for(
    policy: Policy,
    envelope: Envelope,
    recipient: str,
    helo: IdentityCheck | None,
    mailfrom: IdentityCheck | None,
) -> Decision:
    """Return the policy decision for one recipient."""
    return decide(
        policy,
        recipient_domain=recipient_domain(recipient),
        client_ip=envelope.client_ip,
        helo=helo.result if helo else None,
        mailfrom=mailfrom.result if mailfrom else None,
        facts=Facts(sender=envelope.mail_from, helo=envelope.helo),
    )


def header_fields(
    headers: HeaderConfig,
    authserv_id: str,
    envelope: Envelope,
    helo: IdentityCheck | None,
    mailfrom: IdentityCheck | None,
) -> tuple[HeaderField, ...]:
    """Return the header fields to add, top first: Authentication-Results, Received-SPF.

    Received-SPF is for the MAIL FROM identity (RFC 7208 §9.1), whose
    envelope-from is the MAIL FROM address or, for the null sender,
    postmaster@HELO (§2.4), so no verifier can take it for a HELO result.
    """
    fields: list[HeaderField] = []
    if headers.authentication_results:
        value = render_authentication_results(
            authserv_id=authserv_id,
            mailfrom=mailfrom.result if mailfrom else None,
            mailfrom_address=mail_from_sender(envelope.mail_from, envelope.helo),
            helo=helo.result if helo else None,
            helo_name=envelope.helo,
        )
        fields.append(HeaderField(AUTHENTICATION_RESULTS, value))
    if headers.received_spf and mailfrom is not None:
        value = render_received_spf(
            result=mailfrom.result,
            identity=Identity.MAILFROM,
            client_ip=envelope.client_ip,
            envelope_from=mailfrom.sender,
            helo=envelope.helo,
            receiver=None if headers.hide_receiver else headers.receiver,
        )
        fields.append(HeaderField(RECEIVED_SPF, value))
    return tuple(fields)


def describe_action(decision: Decision, *, dry_run: bool) -> str:
    """Return the action word for logs: accept, reject, ... or would-reject."""
    action = decision.action
    if decision.suppressed is not None:
        return f"shadow-{decision.suppressed.kind}"
    if dry_run and not isinstance(action, Accept):
        return f"would-{action.kind}"
    if decision.trusted_relay:
        return "accept-trusted-relay"
    return str(action.kind)


def reply_of(decision: Decision) -> str | None:
    """Return the SMTP reply line of a reject or defer, the reason of a quarantine."""
    action = decision.action
    if isinstance(action, Reject | Defer):
        return str(action.reply)
    if isinstance(action, Quarantine):
        return action.reason
    return None


def log_fields(identity: Identity, check: IdentityCheck | None) -> str:
    """Return ``helo_result=… helo_mechanism=…`` for one identity, for a log line."""
    if check is None:
        return f"{identity}_result=unchecked"
    result: CheckResult = check.result
    if result.problem:
        what = f"{identity}_problem={printable(result.problem)}"
    else:
        what = f"{identity}_mechanism={printable(result.mechanism or '')}"
    return (
        f"{identity}_result={result.result} {what} {identity}_lookups={result.lookups}"
    )


def decision_line(
    client_ip: IPAddress | None,
    helo_name: str,
    mail_from: str,
    entry: RecipientDecision,
    checks: tuple[IdentityCheck | None, IdentityCheck | None],
    *,
    dry_run: bool,
) -> str:
    """Return the log line of one recipient's decision (key=value pairs)."""
    helo, mailfrom = checks
    elapsed = max((c.elapsed_ms for c in checks if c), default=0.0)
    decision = entry.decision
    reply = reply_of(decision)
    return (
        f"client={client_ip} helo={printable(helo_name)}"
        f" sender={printable(mail_from)} rcpt_domain={printable(entry.domain)}"
        f" rule={decision.rule} {log_fields(Identity.HELO, helo)}"
        f" {log_fields(Identity.MAILFROM, mailfrom)}"
        f" action={describe_action(decision, dry_run=dry_run)}"
        f"{f' reply={printable(reply)}' if reply else ''} ms={int(elapsed)}"
    )
