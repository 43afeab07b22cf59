"""What the milter does with the SPF results of a transaction.

Shared by the milter callbacks and ``spf-milter check --config``, so that the
command shows exactly the reply and the header fields the daemon would
produce: the decision for a recipient, the header fields to add, and the
log line of a decision. Pure: no pymilter, no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from spf_milter.action import Accept, Defer, Quarantine, Reject
from spf_milter.config.model import HeaderConfig
from spf_milter.headers import render_authentication_results, render_received_spf
from spf_milter.policy import Decision, Facts, Policy, decide
from spf_milter.spf import CheckResult, Identity
from spf_milter.spf.trace import printable
from spf_milter.verify import IdentityCheck, mail_from_sender

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

AUTHENTICATION_RESULTS = "Authentication-Results"
RECEIVED_SPF = "Received-SPF"


@dataclass(frozen=True, slots=True)
class Envelope:
    """The facts of a transaction that the results are about (untrusted text)."""

    client_ip: IPAddress
    helo: str
    mail_from: str  # "" for the null sender


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
) -> list[tuple[str, str]]:
    """Return the header fields to add, top first: Authentication-Results, Received-SPF.

    Received-SPF is for the MAIL FROM identity (RFC 7208 §9.1), whose
    envelope-from is the MAIL FROM address or, for the null sender,
    postmaster@HELO (§2.4), so no verifier can take it for a HELO result.
    """
    fields: list[tuple[str, str]] = []
    if headers.authentication_results:
        value = render_authentication_results(
            authserv_id=authserv_id,
            mailfrom=mailfrom.result if mailfrom else None,
            mailfrom_address=mail_from_sender(envelope.mail_from, envelope.helo),
            helo=helo.result if helo else None,
            helo_name=envelope.helo,
        )
        fields.append((AUTHENTICATION_RESULTS, value))
    if headers.received_spf and mailfrom is not None:
        value = render_received_spf(
            result=mailfrom.result,
            identity=Identity.MAILFROM,
            client_ip=envelope.client_ip,
            envelope_from=mailfrom.sender,
            helo=envelope.helo,
            receiver=None if headers.hide_receiver else headers.receiver,
        )
        fields.append((RECEIVED_SPF, value))
    return fields


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
