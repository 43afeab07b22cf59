"""The pymilter callbacks: an adapter between libmilter and the transaction flow.

The only module that imports pymilter. Each callback translates what the MTA
said into a call of the connection's Flow (flow.py), which owns what a
transaction is, and translates the Flow's verdict back into libmilter's
return codes, replies and header edits. Any unexpected exception is caught
once, here, logged with its traceback and answered with the verdict the
Flow gives for an internal error, so the daemon never dies of a bug.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import itertools
import logging
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import Milter
import milter

from spf_milter.action import Defer, Reject, milter_reply_text
from spf_milter.flow import Flow, error_verdict
from spf_milter.logsetup import ConnectionLog
from spf_milter.outcome import (
    AUTHENTICATION_RESULTS,
    RECEIVED_SPF,
    AcceptMessage,
    Continue,
    MessageEdits,
    Verdict,
)
from spf_milter.service import Service
from spf_milter.spf.address import IPAddress
from spf_milter.spf.trace import printable

log = logging.getLogger(__name__)

# The steps the MTA does not wait for (@noreply): nothing is decided before
# RCPT, so their errors are answered at the next step it waits for.
NO_REPLY: Final = frozenset({"connect", "hello", "envfrom", "header"})
# Errors of these steps concern one transaction; the others the connection.
TRANSACTION_STEPS: Final = frozenset({"envfrom", "header"})
F = TypeVar("F", bound=Callable[..., Any])

# pymilter is untyped: name what we use of it once, with types.
CONTINUE: Final[int] = Milter.CONTINUE
REJECT: Final[int] = Milter.REJECT
TEMPFAIL: Final[int] = Milter.TEMPFAIL
ACCEPT: Final[int] = Milter.ACCEPT
NOREPLY: Final[int] = Milter.NOREPLY
ALL_OPTS: Final[int] = Milter.ALL_OPTS  # negotiate: take what the MTA offers
# The header fields the flow reads (Flow.header): the others are skipped.
RESULT_FIELDS: Final = frozenset(
    name.lower() for name in (AUTHENTICATION_RESULTS, RECEIVED_SPF)
)


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
    """Answer any unexpected exception of ``callback`` with the on_error verdict.

    A callback the MTA expects no reply to (connect, HELO, MAIL FROM, a
    header field) cannot answer: its error is remembered and answered at
    the next step the MTA waits for (each RCPT, the end of the message).
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

    Accepts Sendmail's ``IPv6:`` prefix and zone indices. An IPv4-mapped
    address is left as it is: the Flow normalises the address it is given.
    """
    if family not in (socket.AF_INET, socket.AF_INET6) or not hostaddr:
        return None
    text = str(hostaddr[0] if isinstance(hostaddr, tuple) else hostaddr)
    if family == socket.AF_INET:
        try:  # the usual case, parsed in C
            return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
        except OSError:
            pass
    text = text.removeprefix("IPv6:").partition("%")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Negotiation:
    """What a milter class negotiates: the same for each of its connections."""

    protocol_mask: int  # the steps it does not decline or answer (pymilter's)
    macros: tuple[tuple[int, str], ...]  # (stage, space-separated macro names)

    @classmethod
    def of(cls, milter_class: type[SpfMilter]) -> Negotiation:
        """Work out ``milter_class``'s negotiation from its decorators."""
        macros = []
        for callback, stage in Milter.MACRO_CALLBACKS.items():
            names = getattr(getattr(milter_class, callback), "_symlist", None)
            if names:
                macros.append((stage, " ".join(names)))
        return cls(milter_class.protocol_mask(), tuple(macros))


class SpfMilter(Milter.Base):  # type: ignore[misc]
    """One SMTP connection, as libmilter presents it."""

    def __init__(
        self,
        service: Service,
        connection_id: int,
        negotiation: Negotiation | None = None,
    ) -> None:
        self.service = service
        self.connection_id = connection_id
        self.negotiation = negotiation or Negotiation.of(type(self))
        self.flow: Flow | None = None
        self.pending_error: str | None = None

    @property
    def in_transaction(self) -> bool:
        """Tell whether a message is between MAIL FROM and its end (a stop waits)."""
        return self.flow is not None and self.flow.in_transaction

    def negotiate(self, opts: list[int]) -> int:
        """Answer the MTA's option negotiation (once per connection).

        pymilter's own negotiate() works the steps and macro lists out
        again for every connection, from the decorators; they are the
        class's, so they are worked out once (``Negotiation``). Its
        setsymlist() also fails on pymilter 1.0.5 (it gives its C module
        bytes where it wants str), and the TypeError makes it give up on
        the whole negotiation: the MTA would then send every event and wait
        for every reply. An MTA that does not offer SETSYMLIST keeps its
        default macro lists.
        """
        plan = self.negotiation
        actions, offered = opts[0], opts[1]
        try:
            if actions & Milter.SETSYMLIST:
                for stage, names in plan.macros:
                    self._ctx.setsymlist(stage, names)
        except Exception:  # libmilter then negotiates all steps: safe, slower
            log.exception("could not ask for macros: the MTA sends its own")
            return ALL_OPTS
        self._actions = actions
        opts[1] = self._protocol = offered & ~plan.protocol_mask
        opts[2] = opts[3] = 0
        return CONTINUE

    # -- the callbacks, in SMTP order ------------------------------------------

    @noreply
    @guarded
    @macros("{client_addr}")
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        client_ip = parse_client_address(family, hostaddr)
        if client_ip is None:
            macro = self._macro("{client_addr}")
            client_ip = parse_client_address(socket.AF_INET6, macro)
        service = self.service
        self.flow = Flow(
            service.settings,
            service.runner,
            service.metrics,
            self.connection_id,
            (client_ip, str(hostname)),
        )
        return CONTINUE

    @noreply
    @guarded
    def hello(self, name: str) -> int:
        if self.pending_error == "hello":
            self.pending_error = None  # a new HELO: the old one's error is moot
        self._flow().hello(name)
        return CONTINUE

    def hello_undecodable(self, name: bytes) -> None:
        """Check a HELO name pymilter could not decode, as hello() would.

        Not UTF-8, so not a valid domain name: its result is "none" (RFC 7208
        §4.3), which the policy's HELO rules see, and the null sender is
        postmaster@ that name. Kept as surrogateescape text, like the
        MAIL FROM address, for the log and the (sanitised) header fields.
        """
        if self.flow is not None:
            self.flow.conn.log.info(
                "HELO name %s is not UTF-8, so no domain name: SPF result none",
                printable(name),
            )
        self.hello(name.decode("utf-8", "surrogateescape"))

    @noreply
    @guarded
    @macros("i", "{auth_authen}")
    def envfrom(self, mail_from: str, *params: str) -> int:
        self._forget_transaction_error()
        flow = self._flow()
        flow.note_queue_id(self._macro("i"))
        authenticated = bool(self._macro("{auth_authen}"))
        flow.mail_from(mail_from, authenticated=authenticated)
        return CONTINUE

    @guarded
    @macros("i")
    def envrcpt(self, recipient: str, *params: str) -> int:
        owed = self._owed_error()
        if owed is not None:
            return owed
        flow = self._flow()
        flow.note_queue_id(self._macro("i"))
        return self._answer(flow.recipient(recipient))

    def header_bytes(self, name: str, value: bytes) -> int:
        """Pass on the fields that claim an SPF result; answer the rest at once.

        pymilter's C module calls this for every header field (the name
        decoded, the value not). Only Authentication-Results and
        Received-SPF matter to the flow; the others are not decoded, and
        get what header() would answer.
        """
        if name.lower() in RESULT_FIELDS:
            return int(super().header_bytes(name, value))
        return NOREPLY if self._protocol & Milter.P_NR_HDR else CONTINUE

    @noreply
    @guarded
    def header(self, name: str, value: str) -> int:
        self._flow().header(name, value)
        return CONTINUE

    @guarded
    @macros("i")
    def eom(self) -> int:
        owed = self._owed_error()
        self._forget_transaction_error()
        if owed is not None:
            return owed
        flow = self._flow()
        flow.note_queue_id(self._macro("i"))
        if not flow.conn.queue_id:
            self.service.note_once(
                "no-queue-id", "the MTA sends no queue id (macro i): logs lack it"
            )
        self._edit(flow.end_of_message())
        flow.end_transaction()
        return CONTINUE

    @guarded
    def abort(self) -> int:
        self._forget_transaction_error()
        if self.flow is not None:
            self.flow.end_transaction()
        return CONTINUE

    @guarded
    def close(self) -> int:
        if self.flow is not None:
            self.flow.close()
        self.flow = None
        return CONTINUE

    def data(self) -> int:
        # Kept over TCP, though it does nothing: the MTA waits for this
        # reply, which carries the TCP ACK of its DATA packet. Without it the
        # MTA's next small write (the headers) waits for our delayed ACK,
        # ~40 ms per message over inet: sockets (Nagle on the MTA's side).
        # Declined on a unix socket (UnixSocketMilter), which has no Nagle.
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

    # -- translating verdicts ------------------------------------------------------

    def _answer(self, verdict: Verdict) -> int:
        """Tell the MTA ``verdict``: a return code, and the reply of a refusal."""
        if isinstance(verdict, Reject | Defer):
            reply = verdict.reply
            self.setreply(str(reply.code), reply.status, milter_reply_text(reply))
            if self.flow is not None:
                self.flow.answered()
            return REJECT if isinstance(verdict, Reject) else TEMPFAIL
        return ACCEPT if isinstance(verdict, AcceptMessage) else CONTINUE

    def _edit(self, edits: MessageEdits) -> None:
        for removal in edits.remove:
            self.chgheader(removal.name, removal.index, "")
        # Insert at the top, above the MTA's Received: (RFC 7208 §9.1);
        # inserted last, the first field ends up on top.
        for field in reversed(edits.add):
            self.addheader(field.name, field.value, 0)
        if edits.quarantine is not None:
            self.quarantine(edits.quarantine)

    def _flow(self) -> Flow:
        if self.flow is None:
            raise RuntimeError("no connection: the MTA skipped the connect step")
        return self.flow

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

    # -- internal errors -----------------------------------------------------------

    def _owed_error(self) -> int | None:
        """Answer an error of a step the MTA did not wait for, if one is owed.

        A refusal (the on_error tempfail) stays owed: every recipient of
        the transaction (of the connection, for connect and HELO) gets it.
        Where ``on_error: accept`` steps aside, the error is forgotten and
        the step goes on.
        """
        step = self.pending_error
        if step is None:
            return None
        verdict = self._error_verdict(step)
        if isinstance(verdict, Continue):
            self.pending_error = None
            return None
        return self._tell_error(verdict)

    def _forget_transaction_error(self) -> None:
        """Forget the error of an ended transaction (RSET, MAIL FROM, its end)."""
        if self.pending_error in TRANSACTION_STEPS:
            self.pending_error = None

    def log_error(self, callback: str) -> None:
        """Log the exception being handled, with its traceback."""
        conn_log = (
            self.flow.conn.log
            if self.flow is not None
            else ConnectionLog(log, self.connection_id)
        )
        conn_log.exception("internal error in %s", callback)

    def internal_error(self, callback: str) -> int:
        """Log the exception being handled and answer the Flow's error verdict."""
        self.log_error(callback)
        return self._tell_error(self._error_verdict(callback))

    def _error_verdict(self, step: str) -> Verdict:
        """Return the Flow's answer to an internal error in ``step`` (on_error)."""
        return error_verdict(self.flow, step, self.service.settings.config.on_error)

    def _tell_error(self, verdict: Verdict) -> int:
        """Tell the MTA an error verdict; if its reply cannot be set, still refuse."""
        try:
            return self._answer(verdict)
        except Exception:
            log.debug("could not set the error reply", exc_info=True)
            return REJECT if isinstance(verdict, Reject) else TEMPFAIL


class UnixSocketMilter(SpfMilter):
    """One SMTP connection over a unix socket, where the DATA step is declined.

    Over TCP its reply saves a Nagle stall (SpfMilter.data); a unix socket
    has none, and the MTA need not send the step nor wait for its answer.
    """

    @nocallback
    def data(self) -> int:
        return CONTINUE


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
    over_tcp = socket_spec.startswith(("inet:", "inet6:"))
    milter_class = SpfMilter if over_tcp else UnixSocketMilter
    plan = Negotiation.of(milter_class)
    Milter.factory = lambda: traffic.opened(milter_class(service, next(counter), plan))
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

    def counted_method(stage: str, method: str) -> Callable[..., int]:
        # counted(), calling the connection's SpfMilter.<method> directly.
        def call(context: Any, *args: Any) -> int:
            last.stage, last.context = stage, context
            bound: Callable[..., int] = getattr(context.getpriv(), method)
            return traffic.call(bound, *args)

        return call

    milter.set_connect_callback(counted("connect", Milter.connect_callback))
    milter.set_helo_callback(counted_method("helo", "hello"))
    milter.set_envfrom_callback(counted_method("envfrom", "envfrom_bytes"))
    milter.set_envrcpt_callback(counted_method("envrcpt", "envrcpt_bytes"))
    # Not counted: header fields and their end come inside a transaction,
    # which a stop waits for anyway, and most fields are skipped at once.
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(counted_method("body", "body"))
    milter.set_eom_callback(counted_method("eom", "eom"))
    milter.set_abort_callback(counted_method("abort", "abort"))
    milter.set_close_callback(counted("close", Milter.close_callback))
    milter.setconn(socket_spec)
    milter.register(
        MILTER_NAME,
        data=counted_method("data", "data"),
        unknown=counted_method("unknown", "unknown"),
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
# fails to decode after RCPT or DATA instead; header steps are not noted,
# nor the end of the header).
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
