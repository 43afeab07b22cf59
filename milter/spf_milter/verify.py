"""The two SPF identities of an SMTP session and how each is checked.

RFC 7208 §2.3 checks the HELO name with <sender> "postmaster@<helo>";
§2.4 checks the MAIL FROM address, and for the null reverse-path it checks
"postmaster@<helo>" instead. This module turns what the SMTP client said
into check_host() calls; it knows nothing of milters or policies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from spf_milter.spf import (
    CheckResult,
    Identity,
    Limits,
    Lookup,
    Memo,
    Trace,
    check_host,
)
from spf_milter.spf.address import IPAddress
from spf_milter.spf.limits import DEFAULT_LIMITS
from spf_milter.spf.lookup import Prefetch


@dataclass(frozen=True, slots=True)
class IdentityCheck:
    """The result for one identity, with the <sender> that was checked."""

    identity: Identity
    sender: str
    result: CheckResult
    elapsed_ms: float = 0.0  # how long the check took
    trace: Trace | None = field(default=None, compare=False)  # when traced


def parse_mail_from(argument: str) -> str:
    """Return the address of a MAIL FROM argument; "" for the null sender.

    Accepts what MTAs hand to milters: ``<user@example.org>``, a bare
    address, and RFC 5321 source routes (``<@relay:user@example.org>``),
    whose route is dropped.
    """
    address = argument.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    if address.startswith("@") and ":" in address:
        address = address.split(":", 1)[1]  # RFC 5321 §4.1.2 A-d-l, obsolete
    return address


def mail_from_sender(address: str, helo: str) -> str:
    """Return the <sender> of the MAIL FROM identity (§2.4, §4.3)."""
    if not address:
        return f"postmaster@{helo}"
    return address


async def check_helo(
    lookup: Lookup,
    ip: IPAddress,
    helo: str,
    *,
    receiver: str = "unknown",
    limits: Limits = DEFAULT_LIMITS,
    trace: Trace | None = None,
    prefetch: Prefetch | None = None,
    memo: Memo | None = None,
) -> IdentityCheck:
    """Check the HELO identity (§2.3); an address literal gives "none"."""
    sender = f"postmaster@{helo}"
    started = time.monotonic()
    result = await check_host(
        lookup,
        ip,
        helo,
        sender,
        helo=helo,
        receiver=receiver,
        limits=limits,
        trace=trace,
        prefetch=prefetch,
        memo=memo,
    )
    elapsed = _ms_since(started)
    return IdentityCheck(Identity.HELO, sender, result, elapsed, trace)


async def check_mail_from(
    lookup: Lookup,
    ip: IPAddress,
    address: str,
    helo: str,
    *,
    receiver: str = "unknown",
    limits: Limits = DEFAULT_LIMITS,
    trace: Trace | None = None,
    prefetch: Prefetch | None = None,
    memo: Memo | None = None,
) -> IdentityCheck:
    """Check the MAIL FROM identity (§2.4); ``address`` "" is the null sender."""
    sender = mail_from_sender(address, helo)
    domain = sender.rpartition("@")[2]
    started = time.monotonic()
    result = await check_host(
        lookup,
        ip,
        domain,
        sender,
        helo=helo,
        receiver=receiver,
        limits=limits,
        trace=trace,
        prefetch=prefetch,
        memo=memo,
    )
    elapsed = _ms_since(started)
    return IdentityCheck(Identity.MAILFROM, sender, result, elapsed, trace)


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000
