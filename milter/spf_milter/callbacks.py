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
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar, cast

import Milter
import milter

from spf_milter.action import Defer, Quarantine, Reject, SmtpReply, milter_reply_text
from spf_milter.config import OnError
from spf_milter.dnsclient.cache import NotCached
from spf_milter.headers import is_our_authserv_id
from spf_milter.logsetup import ConnectionLog
from spf_milter.outcome import (
    AUTHENTICATION_RESULTS,
    RECEIVED_SPF,
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


class ClientFieldCount:
    """How many fields of one name a transaction's header held (1-based indices).

    Kept beside the Transaction and tied to it by identity, so that a new
    MAIL FROM (a new Transaction object) starts the count afresh.
    """

    def __init__(self) -> None:
        self._transaction: Transaction | None = None
        self._count = 0

    def count(self, transaction: Transaction) -> None:
        """Count one more field; a new transaction starts again from one."""
        if transaction is not self._transaction:
            self._transaction, self._count = transaction, 0
        self._count += 1

    def of(self, transaction: Transaction) -> int:
        """Return how many fields ``transaction`` held."""
        return self._count if transaction is self._transaction else 0


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
        # The client's Received-SPF fields in the current transaction (header()).
        self.client_received_spf = ClientFieldCount()
        # A recipient's refusal, from its decision until it is answered: an
        # internal error meanwhile answers it rather than on_error.
        self.refusing: Reject | Defer | None = None

    @property
    def in_transaction(self) -> bool:
        """Tell whether a message is between MAIL FROM and its end (a stop waits)."""
        return self.conn is not None and self.conn.transaction is not None

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

    def hello_undecodable(self, name: bytes) -> None:
        """Check a HELO name pymilter could not decode, as hello() would.

        Not UTF-8, so not a valid domain name: its result is "none" (RFC 7208
        §4.3), which the policy's HELO rules see, and the null sender is
        postmaster@ that name. Kept as surrogateescape text, like the
        MAIL FROM address, for the log and the (sanitised) header fields.
        """
        if self.conn is not None:
            self.conn.log.info(
                "HELO name %s is not UTF-8, so no domain name: SPF result none",
                printable(name),
            )
        self.hello(name.decode("utf-8", "surrogateescape"))

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
        decision = decide_for(conn.settings.policy, envelope, recipient, helo, mailfrom)
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
        if name.lower() == RECEIVED_SPF.lower():
            self.client_received_spf.count(transaction)
            return CONTINUE
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
        self._remove_client_fields(conn, transaction)
        if transaction.skip is None and conn.client_ip is not None:
            helo, mailfrom = self._results(conn, transaction)
            envelope = Envelope(conn.client_ip, conn.helo, transaction.mail_from)
            config = conn.settings.config
            fields = header_fields(
                config.headers, config.authserv_id, envelope, helo, mailfrom
            )
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

    # Not declined: without it libmilter cannot go from DATA to a header-less end.
    @noreply
    def eoh(self) -> int:
        return CONTINUE

    @nocallback
    def body(self, chunk: bytes) -> int:
        return CONTINUE

    @nocallback
    def unknown(self, command: str) -> int:
        return CONTINUE

    # -- helpers -----------------------------------------------------------------

    def _remove_client_fields(self, conn: Connection, transaction: Transaction) -> None:
        """Remove what the client wrote to pass for our results.

        An Authentication-Results field with our authserv-id is a forgery
        (RFC 8601 §5). Every Received-SPF field goes too: a DMARC verifier
        such as OpenDMARC takes the first one in the message when it cannot
        use an A-R result, and ours is not there to be first when
        ``headers.received_spf`` is off. The milter sees the fields added
        by milters listed before it as if the client had sent them, which
        is why it must come first (README, "Wiring it into the MTA").
        Deleting the last field first keeps the earlier indices valid.
        """
        for index in reversed(transaction.forged):
            self.chgheader(AUTHENTICATION_RESULTS, index, "")
            conn.log.info("removed a forged %s field", AUTHENTICATION_RESULTS)
        received_spf = self.client_received_spf.of(transaction)
        for index in range(received_spf, 0, -1):
            self.chgheader(RECEIVED_SPF, index, "")
        if received_spf:  # common in forwarded mail: not worth an info line
            conn.log.debug("removed %d %s fields", received_spf, RECEIVED_SPF)

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
        or in eom() when the message had one (or a client's Received-SPF),
        is answered with tempfail.
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
        if callback != "eom" or transaction is None:
            return True
        client_fields = self.client_received_spf.of(transaction)
        return not transaction.forged and not client_fields

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
    traffic = service.traffic
    Milter.factory = lambda: traffic.opened(SpfMilter(service, next(counter)))
    milter.set_flags(ACTIONS)
    # Our callbacks catch their own exceptions (guarded); what is left is
    # pymilter failing before calling us: an 8-bit HELO name is routed to
    # hello_undecodable() (see _route_untrapped); others go on without
    # that step rather than tempfail the client for ever.
    milter.set_exception_policy(CONTINUE)
    last = threading.local()  # per connection: pymilter gives each its own

    def counted(stage: str, callback: Callable[..., int]) -> Callable[..., int]:
        # Noted for _route_untrapped; counted in progress for a stop (Traffic).
        def call(context: Any, *args: Any) -> int:
            last.stage, last.context = stage, context
            return traffic.call(callback, context, *args)

        return call

    milter.set_connect_callback(counted("connect", Milter.connect_callback))
    milter.set_helo_callback(
        counted("helo", lambda ctx, host: ctx.getpriv().hello(host))
    )
    milter.set_envfrom_callback(
        counted("envfrom", lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    )
    milter.set_envrcpt_callback(
        counted("envrcpt", lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    )
    milter.set_header_callback(
        counted("header", lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    )
    milter.set_eoh_callback(counted("eoh", lambda ctx: ctx.getpriv().eoh()))
    milter.set_body_callback(
        counted("body", lambda ctx, chunk: ctx.getpriv().body(chunk))
    )
    milter.set_eom_callback(counted("eom", lambda ctx: ctx.getpriv().eom()))
    milter.set_abort_callback(counted("abort", lambda ctx: ctx.getpriv().abort()))
    milter.set_close_callback(counted("close", Milter.close_callback))
    milter.setconn(socket_spec)
    milter.register(
        MILTER_NAME,
        data=counted("data", lambda ctx: ctx.getpriv().data()),
        unknown=counted("unknown", lambda ctx, cmd: ctx.getpriv().unknown(cmd)),
        negotiate=Milter.negotiate_callback,
    )
    milter.opensocket(True)  # True: remove a stale unix socket first
    after_open()
    previous_hook = sys.excepthook
    sys.excepthook = _route_untrapped(previous_hook, last)
    try:
        milter.main()
    finally:
        sys.excepthook = previous_hook


# The steps after which the MTA's next event may be a HELO (a header's name
# fails to decode after data or header instead).
BEFORE_HELO: Final = frozenset({"connect", "helo", "eom", "abort"})


def _route_untrapped(
    previous: Callable[..., Any], last: threading.local
) -> Callable[..., None]:
    """Return a sys.excepthook that hands an undecodable HELO name to its milter.

    pymilter 1.0.5 decodes the HELO name strictly as UTF-8, before any code
    of ours runs, and reports the UnicodeDecodeError with PyErr_Print(),
    that is through sys.excepthook, in the thread state pymilter keeps for
    that connection; ``last`` (thread-local) tells its context and step.
    Anything else goes to the ``previous`` hook.
    """

    def hook(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        stage = getattr(last, "stage", None)
        session = last.context.getpriv() if stage in BEFORE_HELO else None
        if isinstance(error, UnicodeDecodeError) and isinstance(session, SpfMilter):
            session.hello_undecodable(error.object)
            return
        previous(kind, error, trace)

    return hook


def stop() -> None:
    """Ask libmilter to stop accepting connections and return from serve().

    Blocks until libmilter's listener lets go of its socket: up to its next
    poll (5 s) unless a signal interrupts it (daemon.stop_listener does).
    Sessions already open go on; Service.traffic tells when they are done.
    """
    milter.stop()
