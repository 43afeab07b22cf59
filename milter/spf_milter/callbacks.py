"""The pymilter callbacks: thin glue between libmilter and the SPF checks.

The only module that imports pymilter. Each callback records what the MTA
said on the Connection/Transaction objects (session.py), starts checks on
the shared event loop (verify.py), asks the policy at RCPT (outcome.py) and
edits the header at the end of the message. Any unexpected exception is
caught once, here, logged with its traceback and answered with the
configured ``on_error`` action, so the daemon never dies of a bug.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar, cast

import Milter
import milter

from spf_milter.action import Defer, Quarantine, Reject, SmtpReply, milter_reply_text
from spf_milter.config import OnError
from spf_milter.dnscache import NotCached
from spf_milter.headers import is_our_authserv_id
from spf_milter.logsetup import ConnectionLog
from spf_milter.outcome import (
    AUTHENTICATION_RESULTS,
    Envelope,
    decide_for,
    describe_action,
    header_fields,
    log_fields,
    recipient_domain,
    reply_of,
)
from spf_milter.policy import Decision, in_networks
from spf_milter.service import Service
from spf_milter.session import (
    CheckFuture,
    Connection,
    IPAddress,
    RecipientDecision,
    Skip,
    Transaction,
)
from spf_milter.spf import CheckResult, Identity, Lookup, SpfResult
from spf_milter.spf.eager import WouldWait, run_now
from spf_milter.spf.trace import printable
from spf_milter.verify import (
    IdentityCheck,
    check_helo,
    check_mail_from,
    mail_from_sender,
    parse_mail_from,
)

log = logging.getLogger(__name__)

ERROR_REPLY: Final = SmtpReply(
    451, "4.3.0", "Temporary SPF milter error, try again later"
)
NO_REPLY: Final = frozenset({"header"})  # callbacks marked @Milter.noreply
F = TypeVar("F", bound=Callable[..., Any])
CheckCoroutine = Coroutine[Any, Any, IdentityCheck]

# pymilter is untyped: name what we use of it once, with types.
CONTINUE: Final[int] = Milter.CONTINUE
REJECT: Final[int] = Milter.REJECT
TEMPFAIL: Final[int] = Milter.TEMPFAIL
ACCEPT: Final[int] = Milter.ACCEPT


def noreply(callback: F) -> F:
    """Tell the MTA not to wait for this callback's reply (pymilter's @noreply)."""
    return cast(F, Milter.noreply(callback))


def nocallback(callback: F) -> F:
    """Tell the MTA not to call this callback at all (pymilter's @nocallback)."""
    return cast(F, Milter.nocallback(callback))


def macros(*names: str) -> Callable[[F], F]:
    """Ask the MTA for these macros before this callback (protocol 6 setsymlist).

    A stock Postfix or Sendmail then sends what we need without any
    milter_*_macros or confMILTER_MACROS_* settings.
    """
    return cast(Callable[[F], F], Milter.symlist(*names))


def guarded(callback: F) -> F:
    """Answer any unexpected exception of ``callback`` with the on_error action.

    A callback the MTA expects no reply to (header) cannot answer: its error
    is remembered and answered at the end of the message.
    """

    @functools.wraps(callback)
    def wrapper(self: SpfMilter, *args: Any) -> Any:
        try:
            return callback(self, *args)
        except Exception:  # noqa: BLE001 - the one boundary of STYLE.md §3.4
            if callback.__name__ in NO_REPLY:
                self.log_error(callback.__name__)
                self.pending_error = callback.__name__
                return CONTINUE
            return self.internal_error(callback.__name__)

    return wrapper  # type: ignore[return-value]


def parse_client_address(family: int, hostaddr: Any) -> IPAddress | None:
    """Return the client address libmilter reports, or None for local/unknown.

    Accepts Sendmail's ``IPv6:`` prefix and zone indices; an IPv4-mapped
    IPv6 address becomes the IPv4 address (RFC 7208 §5).
    """
    if family not in (socket.AF_INET, socket.AF_INET6) or not hostaddr:
        return None
    text = str(hostaddr[0] if isinstance(hostaddr, tuple) else hostaddr)
    text = text.removeprefix("IPv6:").partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class SpfMilter(Milter.Base):  # type: ignore[misc]
    """One SMTP connection, as libmilter presents it."""

    def __init__(self, service: Service, connection_id: int) -> None:
        self.service = service
        self.connection_id = connection_id
        self.conn: Connection | None = None
        self.pending_error: str | None = None
        # A recipient's refusal, from its decision until it is answered: an
        # internal error meanwhile answers it rather than on_error.
        self.refusing: Reject | Defer | None = None

    def setsymlist(self, stage: int, *names: str) -> None:
        """Ask for the macros ``names`` at ``stage`` (called by negotiate()).

        pymilter 1.0.5's own setsymlist() gives its C module bytes where it
        wants str; the TypeError is swallowed by negotiate(), which then
        gives up on the whole negotiation: no macro lists, and none of the
        steps declined (@nocallback) or unanswered (@noreply), so the MTA
        sends every event and waits for every reply. An MTA that does not
        offer SETSYMLIST keeps its default macro lists.
        """
        if self._actions & Milter.SETSYMLIST:
            self._ctx.setsymlist(stage, " ".join(names))

    # -- the callbacks, in SMTP order ------------------------------------------

    @guarded
    @macros("j", "{daemon_name}", "{client_addr}")
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        settings = self.service.settings
        client_ip = parse_client_address(family, hostaddr)
        if client_ip is None:
            client_ip = parse_client_address(
                socket.AF_INET6, self._macro("{client_addr}")
            )
        conn_log = ConnectionLog(log, self.connection_id)
        self.conn = Connection(
            self.connection_id, settings, conn_log, client_ip, str(hostname)
        )
        if client_ip is None:
            self.conn.skip = Skip.NO_ADDRESS
        elif in_networks(client_ip, settings.config.trusted_networks):
            self.conn.skip = Skip.TRUSTED
        if conn_log.isEnabledFor(logging.DEBUG):
            conn_log.debug(
                "connect from %s [%s]%s",
                printable(hostname),
                client_ip,
                f": not checked ({self.conn.skip})" if self.conn.skip else "",
            )
        return CONTINUE

    @guarded
    def hello(self, name: str) -> int:
        conn = self._connection()
        if name == conn.helo and conn.helo_check is not None:
            return CONTINUE
        conn.helo = name
        if conn.helo_check is not None:
            conn.helo_check.cancel()
            conn.helo_check = None
        client_ip = conn.client_ip
        if conn.skip is None and client_ip is not None:
            conn.helo_check = self._submit(
                lambda lookup: check_helo(
                    lookup,
                    client_ip,
                    name,
                    receiver=conn.settings.config.headers.receiver,
                    limits=conn.settings.limits,
                )
            )
        return CONTINUE

    @guarded
    @macros("i", "{auth_authen}")
    def envfrom(self, mail_from: str, *params: str) -> int:
        conn = self._connection()
        self._end_transaction()
        address = parse_mail_from(mail_from)
        transaction = Transaction(address, skip=conn.skip)
        conn.transaction = transaction
        self._note_queue_id()
        if transaction.skip is None and self._authenticated():
            transaction.skip = Skip.AUTHENTICATED
        if transaction.skip is not None or conn.client_ip is None:
            return CONTINUE
        transaction.mailfrom_check = self._start_mailfrom_check(conn, address)
        return CONTINUE

    @guarded
    @macros("i")
    def envrcpt(self, recipient: str, *params: str) -> int:
        conn = self._connection()
        transaction = self._transaction()
        if transaction.skip is not None or conn.client_ip is None:
            return CONTINUE
        self._note_queue_id()
        helo, mailfrom = self._results(conn, transaction)
        envelope = Envelope(conn.client_ip, conn.helo, transaction.mail_from)
        decision = decide_for(conn.settings, envelope, recipient, helo, mailfrom)
        if (
            isinstance(decision.action, Reject | Defer)
            and not conn.settings.config.dry_run
        ):
            self.refusing = decision.action
        self._count(decision, helo, mailfrom)
        entry = RecipientDecision(recipient, recipient_domain(recipient), decision)
        transaction.decisions.append(entry)
        action = decision.action
        if conn.settings.config.dry_run:
            return CONTINUE
        if isinstance(action, Quarantine):
            transaction.quarantine = action.reason
        if not isinstance(action, Reject | Defer):
            return CONTINUE
        # Logged now: a refused recipient never reaches the end of the message.
        self._log_decisions(transaction, helo, mailfrom)
        self._reply(action.reply)
        self.refusing = None
        return REJECT if isinstance(action, Reject) else TEMPFAIL

    @noreply
    @guarded
    def header(self, name: str, value: str) -> int:
        transaction = self._transaction()
        if name.lower() != AUTHENTICATION_RESULTS.lower():
            return CONTINUE
        transaction.auth_results_seen += 1
        if is_our_authserv_id(value, self._connection().settings.config.authserv_id):
            # RFC 8601 §5: a field claiming our authserv-id from outside is forged.
            transaction.forged.append(transaction.auth_results_seen)
        return CONTINUE

    @guarded
    @macros("i")
    def eom(self) -> int:
        if self.pending_error is not None:
            callback, self.pending_error = self.pending_error, None
            return self.internal_error(callback, logged=True)
        conn = self._connection()
        transaction = self._transaction()
        self._note_queue_id()
        if not conn.queue_id:
            self.service.note_once(
                "no-queue-id", "the MTA sends no queue id (macro i): logs lack it"
            )
        if transaction.skip is Skip.TRUSTED:
            return CONTINUE
        for index in reversed(transaction.forged):
            self.chgheader(AUTHENTICATION_RESULTS, index, "")
            conn.log.info("removed a forged %s field", AUTHENTICATION_RESULTS)
        if transaction.skip is None and conn.client_ip is not None:
            helo, mailfrom = self._results(conn, transaction)
            envelope = Envelope(conn.client_ip, conn.helo, transaction.mail_from)
            fields = header_fields(conn.settings, envelope, helo, mailfrom)
            # Insert at the top, above the MTA's Received: (RFC 7208 §9.1);
            # inserted last, the first field ends up on top.
            for name, value in reversed(fields):
                self.addheader(name, value, 0)
            self._log_decisions(transaction, helo, mailfrom)
        if transaction.quarantine is not None:
            self.quarantine(transaction.quarantine)
        conn.transaction = None
        return CONTINUE

    @guarded
    def abort(self) -> int:
        self._end_transaction()
        return CONTINUE

    @guarded
    def close(self) -> int:
        if self.conn is not None:
            self._end_transaction()
            if self.conn.helo_check is not None:
                self.conn.helo_check.cancel()
        self.conn = None
        return CONTINUE

    def data(self) -> int:
        # Kept on purpose, though it does nothing: the MTA waits for this
        # reply, which carries the TCP ACK of its DATA packet. Without it the
        # MTA's next small write (the headers) waits for our delayed ACK,
        # ~40 ms per message over inet: sockets (Nagle on the MTA's side).
        return CONTINUE

    @nocallback
    def eoh(self) -> int:
        return CONTINUE

    @nocallback
    def body(self, chunk: bytes) -> int:
        return CONTINUE

    @nocallback
    def unknown(self, command: str) -> int:
        return CONTINUE

    # -- helpers -----------------------------------------------------------------

    def _connection(self) -> Connection:
        if self.conn is None:
            raise RuntimeError("no connection: the MTA skipped the connect step")
        return self.conn

    def _transaction(self) -> Transaction:
        transaction = self._connection().transaction
        if transaction is None:
            raise RuntimeError("no transaction: the MTA skipped MAIL FROM")
        return transaction

    def _end_transaction(self) -> None:
        conn = self.conn
        if conn is None or conn.transaction is None:
            return
        transaction = conn.transaction
        if any(not entry.logged for entry in transaction.decisions):
            helo, mailfrom = self._results(conn, transaction)
            self._log_decisions(transaction, helo, mailfrom)
        check = transaction.mailfrom_check
        if check is not None and check is not conn.helo_check:
            check.cancel()
        conn.transaction = None

    def _authenticated(self) -> bool:
        conn = self._connection()
        if not conn.settings.config.trust_authenticated:
            return False
        return bool(self._macro("{auth_authen}"))

    def _macro(self, name: str) -> str | None:
        """Return an MTA macro, or None when it is not set or not UTF-8.

        pymilter decodes macro values strictly: an 8-bit value raises
        UnicodeDecodeError, which must not fail the whole callback.
        """
        try:
            value = self.getsymval(name)
        except UnicodeDecodeError:
            log.debug(
                "conn=%d macro %s is not UTF-8: ignored", self.connection_id, name
            )
            return None
        return None if value is None else str(value)

    def _note_queue_id(self) -> None:
        conn = self._connection()
        queue_id = self._macro("i")
        if queue_id and queue_id != conn.queue_id:
            conn.queue_id = str(queue_id)
            if isinstance(conn.log, ConnectionLog):
                conn.log.set_queue_id(printable(conn.queue_id).strip('"'))

    def _start_mailfrom_check(self, conn: Connection, address: str) -> CheckFuture:
        if not address and conn.helo_check is not None:
            # §2.4: the null sender's identity is postmaster@HELO, exactly
            # the HELO check: share it rather than ask the DNS twice.
            return conn.helo_check
        client_ip = conn.client_ip
        if client_ip is None:
            raise RuntimeError("no client address to check")
        return self._submit(
            lambda lookup: check_mail_from(
                lookup,
                client_ip,
                address,
                conn.helo,
                receiver=conn.settings.config.headers.receiver,
                limits=conn.settings.limits,
            )
        )

    def _submit(self, check: Callable[[Lookup], CheckCoroutine]) -> CheckFuture:
        """Start a check; count it for the metrics.

        A check whose DNS answers are all in the cache runs at once, in this
        thread; any other goes to the shared event loop, which waits for DNS.
        """
        metrics = self.service.metrics
        metrics.check_started()
        future = self._answer_from_cache(check)
        if future is None:
            future = self.service.loop.submit(check(self._connection().settings.lookup))

        def finished(done: CheckFuture) -> None:
            if done.cancelled() or done.exception() is not None:
                metrics.check_abandoned()
                return
            checked = done.result()
            seconds = checked.elapsed_ms / 1000
            metrics.check_finished(
                str(checked.identity), str(checked.result.result), seconds
            )

        future.add_done_callback(finished)
        return future

    def _answer_from_cache(
        self, check: Callable[[Lookup], CheckCoroutine]
    ) -> CheckFuture | None:
        cached = self._connection().settings.cached_lookup
        if cached is None:
            return None
        try:
            checked = run_now(check(cached))
        except (NotCached, WouldWait):
            return None  # it needs the DNS: the event loop will ask
        future: CheckFuture = concurrent.futures.Future()
        future.set_result(checked)
        return future

    def _results(
        self, conn: Connection, transaction: Transaction
    ) -> tuple[IdentityCheck | None, IdentityCheck | None]:
        helo = self._wait(
            conn, conn.helo_check, Identity.HELO, f"postmaster@{conn.helo}"
        )
        sender = mail_from_sender(transaction.mail_from, conn.helo)
        mailfrom = self._wait(
            conn, transaction.mailfrom_check, Identity.MAILFROM, sender
        )
        if mailfrom is not None and mailfrom.identity is Identity.HELO:
            mailfrom = dataclasses.replace(mailfrom, identity=Identity.MAILFROM)
        return helo, mailfrom

    def _wait(
        self,
        conn: Connection,
        future: CheckFuture | None,
        identity: Identity,
        sender: str,
    ) -> IdentityCheck | None:
        """Return the check's result; temperror for ``sender`` if it takes too long."""
        if future is None:
            return None
        try:
            return future.result(timeout=conn.settings.wait_limit)
        except concurrent.futures.TimeoutError:
            conn.log.warning("%s check gave no result in time", identity)
            problem = f"no result within {conn.settings.wait_limit:g} s"
            domain = sender.rpartition("@")[2]
            result = CheckResult(SpfResult.TEMPERROR, domain, problem=problem)
            return IdentityCheck(identity, sender, result)

    def _count(
        self,
        decision: Decision,
        helo: IdentityCheck | None,
        mailfrom: IdentityCheck | None,
    ) -> None:
        driver = decision.identity
        checked = helo if driver is Identity.HELO else mailfrom
        self.service.metrics.decision(
            str(driver) if driver else "none",
            str(checked.result.result) if checked else "unchecked",
            describe_action(
                decision, dry_run=self._connection().settings.config.dry_run
            ),
            decision.rule,
        )

    def _reply(self, reply: SmtpReply) -> None:
        self.setreply(str(reply.code), reply.status, milter_reply_text(reply))

    def _log_decisions(
        self,
        transaction: Transaction,
        helo: IdentityCheck | None,
        mailfrom: IdentityCheck | None,
    ) -> None:
        """Log one line per decision not logged yet."""
        conn = self._connection()
        if not conn.log.isEnabledFor(logging.INFO):
            for entry in transaction.decisions:
                entry.logged = True
            return
        elapsed = max((c.elapsed_ms for c in (helo, mailfrom) if c), default=0.0)
        for entry in transaction.decisions:
            if entry.logged:
                continue
            entry.logged = True
            decision = entry.decision
            reply = reply_of(decision)
            conn.log.info(
                "client=%s helo=%s sender=%s rcpt_domain=%s rule=%s %s %s"
                " action=%s%s ms=%d",
                conn.client_ip,
                printable(conn.helo),
                printable(transaction.mail_from),
                printable(entry.domain),
                decision.rule,
                log_fields(Identity.HELO, helo),
                log_fields(Identity.MAILFROM, mailfrom),
                describe_action(decision, dry_run=conn.settings.config.dry_run),
                f" reply={printable(reply)}" if reply else "",
                elapsed,
            )

    def log_error(self, callback: str) -> None:
        """Log the exception being handled, with its traceback."""
        conn_log = (
            self.conn.log if self.conn else ConnectionLog(log, self.connection_id)
        )
        conn_log.exception("internal error in %s", callback)

    def internal_error(self, callback: str, *, logged: bool = False) -> int:
        """Log the exception being handled and return the on_error answer.

        ``on_error: accept`` steps aside for this one callback (CONTINUE,
        so the MTA still calls eom, which removes forged fields), but never
        undoes a recipient's refusal already decided, and never passes a
        message that may still carry a forged field: an error in header(),
        or in eom() when the message had one, is answered with tempfail.
        """
        if not logged:
            self.log_error(callback)
        refusing, self.refusing = self.refusing, None
        if refusing is not None:
            self._try_reply(refusing.reply)
            return REJECT if isinstance(refusing, Reject) else TEMPFAIL
        on_error = self.service.settings.config.on_error
        if on_error is OnError.ACCEPT and self._may_step_aside(callback):
            return ACCEPT if callback == "eom" else CONTINUE
        self._try_reply(ERROR_REPLY)
        return TEMPFAIL

    def _may_step_aside(self, callback: str) -> bool:
        """Return whether no forged field can outlive this callback's error."""
        if callback == "header":
            return False  # a field was not looked at: it may be forged
        transaction = self.conn.transaction if self.conn else None
        return callback != "eom" or transaction is None or not transaction.forged

    def _try_reply(self, reply: SmtpReply) -> None:
        try:
            self._reply(reply)
        except Exception:
            log.debug("could not set the error reply", exc_info=True)


MILTER_NAME: Final = "spf-milter"
# The actions we use: add and delete header fields, quarantine, ask for macros.
ACTIONS: Final = Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE | Milter.SETSYMLIST


def serve(
    service: Service, socket_spec: str, *, after_open: Callable[[], None]
) -> None:
    """Serve the MTA on ``socket_spec`` until stop() is called.

    The same steps as pymilter's runmilter(), with ``after_open`` run between
    opening the socket and serving: that is where the daemon sets the
    socket's mode and group and drops its privileges.
    """
    counter = itertools.count(1)
    Milter.factory = lambda: SpfMilter(service, next(counter))
    milter.set_flags(ACTIONS)
    # Our callbacks catch their own exceptions (guarded); what is left is
    # pymilter failing before calling us, e.g. decoding an 8-bit HELO name
    # strictly as UTF-8. Go on without that step rather than tempfail the
    # client for ever: its MAIL FROM is still checked.
    milter.set_exception_policy(CONTINUE)
    milter.set_connect_callback(Milter.connect_callback)
    milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(Milter.close_callback)
    milter.setconn(socket_spec)
    milter.register(
        MILTER_NAME,
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )
    milter.opensocket(True)  # True: remove a stale unix socket first
    after_open()
    milter.main()


def stop() -> None:
    """Ask libmilter to stop accepting connections and return from serve()."""
    milter.stop()
