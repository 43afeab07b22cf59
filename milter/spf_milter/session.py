"""What the milter knows about one SMTP connection and its current transaction.

As in an SMTP server, the connection holds what lasts for the session (the
client, the HELO name and its check) and a Transaction holds what lasts
from MAIL FROM to the end of the message; a new MAIL FROM or an RSET
replaces the whole Transaction object, so nothing leaks between messages.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from spf_milter.policy import Decision
from spf_milter.settings import Settings
from spf_milter.spf.address import IPAddress
from spf_milter.verify import IdentityCheck

T_co = TypeVar("T_co", covariant=True)


class Started(Protocol[T_co]):
    """A check started by the CheckRunner (runner.py): what the flow asks of it.

    A concurrent.futures.Future, or runner.Finished for a check that ended
    as it was started.
    """

    def result(self, timeout: float | None = None) -> T_co:
        """Return its value, waiting at most ``timeout`` seconds (TimeoutError)."""

    def done(self) -> bool:
        """Tell whether it has ended."""

    def cancel(self) -> bool:
        """Stop it if it still runs."""

    def cancelled(self) -> bool:
        """Tell whether it was stopped."""

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return what it raised, if anything."""

    def add_done_callback(self, fn: Callable[[Started[T_co]], object]) -> None:
        """Call ``fn`` with it once it has ended (at once if it has)."""


CheckFuture = Started[IdentityCheck]


class Skip(enum.StrEnum):
    """Why a client is not checked at all."""

    TRUSTED = "trusted network"
    AUTHENTICATED = "authenticated"
    NO_ADDRESS = "no client address"


@dataclass(frozen=True, slots=True)
class Envelope:
    """The facts of a transaction that the results are about (untrusted text)."""

    client_ip: IPAddress
    helo: str
    mail_from: str  # "" for the null sender


@dataclass(slots=True)
class RecipientDecision:
    """The policy decision made for one recipient."""

    recipient: str
    domain: str
    decision: Decision
    logged: bool = False


@dataclass(slots=True)
class Transaction:
    """One message: MAIL FROM to end of message."""

    mail_from: str  # the address; "" for the null sender
    skip: Skip | None = None
    envelope: Envelope | None = None  # set when the transaction is checked
    mailfrom_check: CheckFuture | None = None
    decisions: list[RecipientDecision] = field(default_factory=list)
    auth_results_seen: int = 0  # Authentication-Results fields so far
    forged: list[int] = field(default_factory=list)  # 1-based indices of ours
    client_received_spf: int = 0  # the client's Received-SPF fields
    quarantine: str | None = None


@dataclass(slots=True)
class Connection:
    """One SMTP client connection, as the MTA describes it."""

    id: int
    settings: Settings
    log: logging.LoggerAdapter[logging.Logger]
    client_ip: IPAddress | None  # normalised (IPv4-mapped as IPv4)
    client_name: str
    skip: Skip | None = None
    helo: str = ""
    helo_check: CheckFuture | None = None
    transaction: Transaction | None = None
    queue_id: str = ""
