"""One SMTP connection's SPF transaction flow, without pymilter.

What a transaction is, in one place: the HELO check at HELO, the MAIL FROM
check at MAIL FROM (the null sender shares the HELO check, §2.4), a bound
on waiting for either (a temperror past it), the policy's decision for each
recipient, the header fields to remove and to add at the end of the
message, the metrics, the log line of each decision, and the answer to an
internal error. Its answers are typed verdicts that cannot be malformed:
callbacks.py only translates them into libmilter calls, and
``spf-milter check --config`` drives this very flow, so it prints what the
daemon does. The checks run through the CheckRunner it is given
(runner.py); the verdicts and the pure pieces (decision, fields, log line)
are in outcome.py.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from spf_milter.action import Defer, Quarantine, Reject
from spf_milter.config import OnError
from spf_milter.headers import is_our_authserv_id
from spf_milter.logsetup import ConnectionLog
from spf_milter.metrics import Metrics
from spf_milter.outcome import (
    AUTHENTICATION_RESULTS,
    CONTINUE,
    ERROR_REPLY,
    RECEIVED_SPF,
    AcceptMessage,
    Continue,
    FieldRemoval,
    HeaderField,
    MessageEdits,
    Verdict,
    decide_for,
    decision_line,
    describe_action,
    header_fields,
    recipient_domain,
)
from spf_milter.policy import Decision, in_networks
from spf_milter.runner import CheckRunner
from spf_milter.session import (
    CheckFuture,
    Connection,
    Envelope,
    RecipientDecision,
    Skip,
    Transaction,
)
from spf_milter.settings import Settings
from spf_milter.spf import CheckResult, Identity, Lookup, SpfResult, Trace
from spf_milter.spf.address import IPAddress, unmapped
from spf_milter.spf.lookup import Prefetch
from spf_milter.spf.trace import printable
from spf_milter.verify import (
    IdentityCheck,
    check_helo,
    check_mail_from,
    mail_from_sender,
    parse_mail_from,
)

log = logging.getLogger(__name__)

IdentityCoroutine = Coroutine[Any, Any, IdentityCheck]
CheckIdentity = Callable[..., IdentityCoroutine]  # verify.check_helo, check_mail_from


class Flow:
    """The SPF side of one SMTP connection: the MTA's steps in, verdicts out."""

    def __init__(
        self,
        settings: Settings,
        runner: CheckRunner,
        metrics: Metrics,
        connection_id: int,
        client: tuple[IPAddress | None, str],
        *,
        tracing: bool = False,
    ) -> None:
        """Open the connection of ``client`` (its address and host name).

        The address is normalised here, once (IPv4-mapped as IPv4, §5), for
        the trusted networks, the policy and the engine alike.
        """
        address, name = client
        client_ip = None if address is None else unmapped(address)
        conn_log = ConnectionLog(log, connection_id)
        self.conn = Connection(connection_id, settings, conn_log, client_ip, name)
        self.runner = runner
        self.metrics = metrics
        self.tracing = tracing
        # A recipient's refusal, from its decision until the MTA is told: an
        # internal error meanwhile answers it rather than on_error.
        self.refusing: Reject | Defer | None = None
        if client_ip is None:
            self.conn.skip = Skip.NO_ADDRESS
        elif in_networks(client_ip, settings.config.trusted_networks):
            self.conn.skip = Skip.TRUSTED
        if conn_log.isEnabledFor(logging.DEBUG):
            skip = self.conn.skip
            conn_log.debug(
                "connect from %s [%s]%s",
                printable(name),
                client_ip,
                f": not checked ({skip})" if skip else "",
            )

    @property
    def in_transaction(self) -> bool:
        """Tell whether a message is between MAIL FROM and its end."""
        return self.conn.transaction is not None

    def note_queue_id(self, queue_id: str | None) -> None:
        """Note the MTA's queue id, for the following log lines."""
        conn = self.conn
        if queue_id and queue_id != conn.queue_id:
            conn.queue_id = queue_id
            if isinstance(conn.log, ConnectionLog):
                conn.log.set_queue_id(printable(queue_id).strip('"'))

    # -- the SMTP steps ----------------------------------------------------------

    def hello(self, name: str) -> None:
        """Start the HELO check of ``name`` (§2.3); a repeated name keeps it."""
        conn = self.conn
        if name == conn.helo and conn.helo_check is not None:
            return
        conn.helo = name
        if conn.helo_check is not None:
            conn.helo_check.cancel()
            conn.helo_check = None
        client_ip = conn.client_ip
        if conn.skip is None and client_ip is not None:
            conn.helo_check = self._start(check_helo, client_ip, name)

    def mail_from(self, argument: str, *, authenticated: bool = False) -> None:
        """Begin a transaction and start its MAIL FROM check (§2.4).

        ``authenticated``: the client logged in (SMTP AUTH), which skips it
        when the configuration trusts authenticated clients.
        """
        conn = self.conn
        self.end_transaction()
        address = parse_mail_from(argument)
        transaction = Transaction(address, skip=conn.skip)
        conn.transaction = transaction
        trusts = conn.settings.config.trust_authenticated
        if transaction.skip is None and authenticated and trusts:
            transaction.skip = Skip.AUTHENTICATED
        client_ip = conn.client_ip
        if transaction.skip is not None or client_ip is None:
            return
        transaction.envelope = Envelope(client_ip, conn.helo, address)
        transaction.mailfrom_check = self._start_mail_from(client_ip, address)

    def recipient(self, argument: str) -> Continue | Reject | Defer:
        """Decide for one RCPT TO; a refusal is logged at once."""
        conn = self.conn
        transaction = self._transaction()
        envelope = transaction.envelope
        if transaction.skip is not None or envelope is None:
            return CONTINUE
        helo, mailfrom = self.checks()
        decision = decide_for(conn.settings.policy, envelope, argument, helo, mailfrom)
        action = decision.action
        dry_run = conn.settings.config.dry_run
        if isinstance(action, Reject | Defer) and not dry_run:
            self.refusing = action
        if self.metrics.reporting:
            self._count(decision, helo, mailfrom)
        entry = RecipientDecision(argument, recipient_domain(argument), decision)
        transaction.decisions.append(entry)
        if dry_run:
            return CONTINUE
        if isinstance(action, Quarantine):
            transaction.quarantine = action.reason
        if not isinstance(action, Reject | Defer):
            return CONTINUE
        # Logged now: a refused recipient never reaches the end of the message.
        self._log_decisions(transaction, helo, mailfrom)
        return action

    def answered(self) -> None:
        """Note that the MTA was told the last verdict."""
        self.refusing = None

    def header(self, name: str, value: str) -> None:
        """Note a header field the client sent that claims an SPF result."""
        transaction = self._transaction()
        if name.lower() == RECEIVED_SPF.lower():
            transaction.client_received_spf += 1
            return
        if name.lower() != AUTHENTICATION_RESULTS.lower():
            return
        transaction.auth_results_seen += 1
        if is_our_authserv_id(value, self.conn.settings.config.authserv_id):
            # RFC 8601 §5: a field claiming our authserv-id from outside is forged.
            transaction.forged.append(transaction.auth_results_seen)

    def end_of_message(self) -> MessageEdits:
        """Return the message's edits; log its decisions.

        The transaction stays open until end_transaction(), which the
        caller calls once the edits are made: an error in between still
        sees the forged fields (on_error).
        """
        conn = self.conn
        transaction = self._transaction()
        if transaction.skip is Skip.TRUSTED:
            return MessageEdits()
        removals = self._client_fields(transaction)
        fields: tuple[HeaderField, ...] = ()
        envelope = transaction.envelope
        if transaction.skip is None and envelope is not None:
            helo, mailfrom = self.checks()
            config = conn.settings.config
            fields = header_fields(
                config.headers, config.authserv_id, envelope, helo, mailfrom
            )
            self._log_decisions(transaction, helo, mailfrom)
        return MessageEdits(removals, fields, transaction.quarantine)

    def end_transaction(self) -> None:
        """End the transaction (end of message, RSET, new MAIL FROM, abort)."""
        conn = self.conn
        transaction = conn.transaction
        if transaction is None:
            return
        if any(not entry.logged for entry in transaction.decisions):
            helo, mailfrom = self.checks()
            self._log_decisions(transaction, helo, mailfrom)
        check = transaction.mailfrom_check
        if check is not None and check is not conn.helo_check:
            check.cancel()
        conn.transaction = None

    def close(self) -> None:
        """End the connection: drop what still runs for it."""
        self.end_transaction()
        if self.conn.helo_check is not None:
            self.conn.helo_check.cancel()

    # -- results -----------------------------------------------------------------

    def checks(self) -> tuple[IdentityCheck | None, IdentityCheck | None]:
        """Return the HELO and MAIL FROM results, waiting for them (bounded)."""
        conn = self.conn
        transaction = self._transaction()
        helo = self._wait(conn.helo_check, Identity.HELO, f"postmaster@{conn.helo}")
        sender = mail_from_sender(transaction.mail_from, conn.helo)
        mailfrom = self._wait(transaction.mailfrom_check, Identity.MAILFROM, sender)
        if mailfrom is not None and mailfrom.identity is Identity.HELO:
            # The null sender's check is the HELO check (§2.4), as MAIL FROM.
            mailfrom = dataclasses.replace(mailfrom, identity=Identity.MAILFROM)
        return helo, mailfrom

    def _wait(
        self, future: CheckFuture | None, identity: Identity, sender: str
    ) -> IdentityCheck | None:
        """Return the check's result; temperror for ``sender`` if it takes too long."""
        if future is None:
            return None
        wait_limit = self.conn.settings.wait_limit
        try:
            return future.result(timeout=wait_limit)
        except concurrent.futures.TimeoutError:
            self.conn.log.warning("%s check gave no result in time", identity)
            problem = f"no result within {wait_limit:g} s"
            domain = sender.rpartition("@")[2]
            result = CheckResult(SpfResult.TEMPERROR, domain, problem=problem)
            return IdentityCheck(identity, sender, result)

    def _start_mail_from(self, client_ip: IPAddress, address: str) -> CheckFuture:
        conn = self.conn
        if not address and conn.helo_check is not None:
            # §2.4: the null sender's identity is postmaster@HELO, exactly
            # the HELO check: share it rather than ask the DNS twice.
            return conn.helo_check
        return self._start(check_mail_from, client_ip, address, conn.helo)

    def _start(self, check: CheckIdentity, *args: IPAddress | str) -> CheckFuture:
        """Start ``check(lookup, *args)`` through the runner; count it."""
        settings = self.conn.settings
        options = {
            "receiver": settings.config.headers.receiver,
            "limits": settings.limits,
            "memo": self.runner.memo,
        }
        tracing = self.tracing

        def run(lookup: Lookup, prefetch: Prefetch | None) -> IdentityCoroutine:
            trace = Trace() if tracing else None
            return check(lookup, *args, trace=trace, prefetch=prefetch, **options)

        future = self.runner.start(run, settings.lookup, settings.cached_lookup)
        if self.metrics.reporting:
            self.metrics.check_started()
            future.add_done_callback(self._finished)
        return future

    def _finished(self, done: CheckFuture) -> None:
        if done.cancelled() or done.exception() is not None:
            self.metrics.check_abandoned()
            return
        checked = done.result()
        seconds = checked.elapsed_ms / 1000
        self.metrics.check_finished(
            str(checked.identity), str(checked.result.result), seconds
        )

    # -- header fields, metrics, log ---------------------------------------------

    def _client_fields(self, transaction: Transaction) -> tuple[FieldRemoval, ...]:
        """Return the removal of what the client wrote to pass for our results.

        An Authentication-Results field with our authserv-id is a forgery
        (RFC 8601 §5). Every Received-SPF field goes too: a DMARC verifier
        such as OpenDMARC takes the first one in the message when it cannot
        use an A-R result, and ours is not there to be first when
        ``headers.received_spf`` is off. The milter sees the fields added
        by milters before it as if the client had sent them, which is why
        it must come first (README, "Wiring it into the MTA"). The last
        field goes first, so that the earlier indices stay valid.
        """
        conn_log = self.conn.log
        removals = [
            FieldRemoval(AUTHENTICATION_RESULTS, index)
            for index in reversed(transaction.forged)
        ]
        for _ in transaction.forged:
            conn_log.info("removed a forged %s field", AUTHENTICATION_RESULTS)
        count = transaction.client_received_spf
        removals.extend(FieldRemoval(RECEIVED_SPF, i) for i in range(count, 0, -1))
        if count:  # common in forwarded mail: not worth an info line
            conn_log.debug("removed %d %s fields", count, RECEIVED_SPF)
        return tuple(removals)

    def _count(
        self,
        decision: Decision,
        helo: IdentityCheck | None,
        mailfrom: IdentityCheck | None,
    ) -> None:
        driver = decision.identity
        checked = helo if driver is Identity.HELO else mailfrom
        self.metrics.decision(
            str(driver) if driver else "none",
            str(checked.result.result) if checked else "unchecked",
            describe_action(decision, dry_run=self.conn.settings.config.dry_run),
            decision.rule,
        )

    def _log_decisions(
        self,
        transaction: Transaction,
        helo: IdentityCheck | None,
        mailfrom: IdentityCheck | None,
    ) -> None:
        """Log one line per decision not logged yet."""
        conn = self.conn
        enabled = conn.log.isEnabledFor(logging.INFO)
        dry_run = conn.settings.config.dry_run
        for entry in transaction.decisions:
            if entry.logged:
                continue
            entry.logged = True
            if enabled:
                line = decision_line(
                    conn.client_ip,
                    conn.helo,
                    transaction.mail_from,
                    entry,
                    (helo, mailfrom),
                    dry_run=dry_run,
                )
                conn.log.info("%s", line)

    # -- internal errors ---------------------------------------------------------

    def take_refusal(self) -> Reject | Defer | None:
        """Return (and forget) a refusal decided but not yet told to the MTA."""
        refusing, self.refusing = self.refusing, None
        return refusing

    def may_step_aside(self, step: str) -> bool:
        """Return whether no forged field can outlive an error in ``step``."""
        if step == "header":
            return False  # a field was not looked at: it may be forged
        transaction = self.conn.transaction
        if step != "eom" or transaction is None:
            return True
        return not transaction.forged and not transaction.client_received_spf

    def _transaction(self) -> Transaction:
        transaction = self.conn.transaction
        if transaction is None:
            raise RuntimeError("no transaction: the MTA skipped MAIL FROM")
        return transaction


def error_verdict(flow: Flow | None, step: str, on_error: OnError) -> Verdict:
    """Return the answer to an internal error in ``step`` (``on_error``).

    ``on_error: accept`` steps aside for this one step (Continue, so that
    the MTA still reaches the end of the message, where forged fields are
    removed), but never undoes a recipient's refusal already decided, and
    never passes a message that may still carry a forged field: an error in
    a header step, or at the end of a message that had one (or a client's
    Received-SPF), gets the tempfail.
    """
    refusing = flow.take_refusal() if flow is not None else None
    if refusing is not None:
        return refusing
    steps_aside = step != "header" and (flow is None or flow.may_step_aside(step))
    if on_error is OnError.ACCEPT and steps_aside:
        return AcceptMessage() if step == "eom" else CONTINUE
    return Defer(ERROR_REPLY)
