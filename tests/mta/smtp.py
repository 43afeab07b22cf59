"""An SMTP client for tests: every reply recorded, rejections returned, not raised.

::

    result = send(postfix.port, client_ip="192.0.2.10", helo="mail.example.net",
                  mail_from="a@example.org", rcpt_to=["b@x.test", "reject@x.test"])
    result.mail.code                       # 250
    result.rcpt["reject@x.test"]           # Reply(550, "5.7.1 echo says no")
    result.end_of_data                     # Reply(250, "2.0.0 Ok: queued as ...")
    result.queue_id                        # "..."

Sendmail has no XCLIENT: a test there varies the client with a real loopback
source address instead (``source="127.0.0.10"``, or ``host="::1"``), which
works the same with Postfix.

HELO names, addresses and header fields may be ``bytes`` and go on the wire
exactly as given (no quoting, no folding, no checks), so tests can send hostile
values. Only the body has its line ends turned into CRLF; dot-stuffing is done
for the whole message. Each socket read is bounded by ``timeout``; a timeout
raises TimeoutError, since no healthy MTA takes that long.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
import smtplib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

Text = str | bytes
Headers = Mapping[Text, Text] | Sequence[tuple[Text, Text]]

SMTP_TIMEOUT: Final = 30.0  # an upper bound: a busy machine is slow
CLIENT_NAME: Final = "client.test.example"
MESSAGE_ID_DOMAIN: Final = "test.example"
# Postfix: "2.0.0 Ok: queued as 4Xk2Lx0Yz3";
# Sendmail: "2.0.0 5AMEh1xS001234 Message accepted for delivery".
QUEUED_AS: Final = re.compile(
    r"queued as ([0-9A-Za-z]+)|^2\.0\.0 ([0-9A-Za-z]+) Message accepted for delivery"
)
# RFC 3461 §4: xtext; Postfix decodes XCLIENT attribute values as xtext.
XTEXT_PLAIN: Final = frozenset(range(33, 127)) - {ord("+"), ord("=")}


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply; multi-line texts are joined with newlines."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


# The server closed the connection (or sent garbage) instead of replying.
NO_REPLY: Final = Reply(0, "no reply: connection closed")


@dataclass(slots=True)
class SendResult:
    """What happened at each step; a step never reached stays None (or empty)."""

    greeting: Reply
    helo: Reply | None = None
    xclient: Reply | None = None
    auth: Reply | None = None
    mail: Reply | None = None
    rcpt: dict[str, Reply] = field(default_factory=dict)
    data: Reply | None = None
    end_of_data: Reply | None = None
    message_id: str | None = None

    @property
    def accepted(self) -> bool:
        """True when the server took the message (250 after the final dot)."""
        return self.end_of_data is not None and self.end_of_data.code == 250

    @property
    def queue_id(self) -> str | None:
        """The queue id from ``250 2.0.0 Ok: queued as <id>``, if any."""
        if self.end_of_data is None:
            return None
        found = QUEUED_AS.search(self.end_of_data.text)
        return (found.group(1) or found.group(2)) if found else None

    @property
    def accepted_recipients(self) -> list[str]:
        return [rcpt for rcpt, reply in self.rcpt.items() if reply.ok]


def xtext(value: str) -> str:
    """Encode an XCLIENT attribute value as xtext (RFC 3461 §4)."""
    return "".join(
        chr(byte) if byte in XTEXT_PLAIN else f"+{byte:02X}" for byte in value.encode()
    )


def xclient_addr(client_ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Return Postfix's XCLIENT ADDR form: ``192.0.2.1`` or ``IPV6:2001:db8::1``."""
    address = ipaddress.ip_address(client_ip)
    if address.version == 6:
        return f"IPV6:{address.compressed}"
    return str(address)


def _encode(value: Text) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogateescape")


def _decode(value: Text) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


class SmtpClient:
    """One SMTP connection, step by step; each step returns the Reply."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = SMTP_TIMEOUT,
        source: str | None = None,
    ) -> None:
        """Connect; ``source`` is the local address to connect from (loopback)."""
        # local_hostname: smtplib would otherwise call getfqdn(), a DNS query.
        self.smtp = smtplib.SMTP(
            local_hostname=CLIENT_NAME,
            timeout=timeout,
            source_address=None if source is None else (source, 0),
        )
        code, text = self.smtp.connect(host, port)
        self.greeting = Reply(code, text.decode("utf-8", "replace"))

    def command(self, line: Text) -> Reply:
        """Send one raw command line (CRLF is added) and read the reply."""
        try:
            self.smtp.send(_encode(line) + b"\r\n")
            code, text = self.smtp.getreply()
        except smtplib.SMTPServerDisconnected:
            return NO_REPLY
        return Reply(code, text.decode("utf-8", "replace"))

    def hello(self, name: Text, *, esmtp: bool = True) -> Reply:
        return self.command((b"EHLO " if esmtp else b"HELO ") + _encode(name))

    def xclient(self, client_ip: str, client_name: str | None = None) -> Reply:
        """Claim another client; Postfix answers with a new 220 greeting."""
        attributes = f"ADDR={xtext(xclient_addr(client_ip))}"
        if client_name is not None:
            attributes += f" NAME={xtext(client_name)}"
        return self.command(f"XCLIENT {attributes}")

    def auth_plain(self, user: str, password: str) -> Reply:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.command(f"AUTH PLAIN {token}")

    def mail(self, sender: Text, params: Text = b"") -> Reply:
        suffix = b" " + _encode(params) if params else b""
        return self.command(b"MAIL FROM:<" + _encode(sender) + b">" + suffix)

    def rcpt(self, recipient: Text) -> Reply:
        return self.command(b"RCPT TO:<" + _encode(recipient) + b">")

    def data(self, message: bytes) -> tuple[Reply, Reply | None]:
        """Send DATA and, after a 354, the (dot-stuffed) message and the dot."""
        go_ahead = self.command(b"DATA")
        if go_ahead.code != 354:
            return go_ahead, None
        payload = re.sub(rb"(?m)^\.", b"..", message)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        return go_ahead, self.command(payload + b".")

    def close(self) -> None:
        """Say QUIT if the server still listens, then close the socket."""
        with contextlib.suppress(OSError, smtplib.SMTPException):
            self.command(b"QUIT")
        self.smtp.close()


def build_message(
    headers: Headers | None, body: Text, *, add_message_id: bool = True
) -> tuple[bytes, str | None]:
    """Return the message bytes and its Message-ID (None if it has none).

    A Message-ID is added unless ``headers`` has one or ``add_message_id`` is
    false; the default headers are only that and ``Subject: test message``.
    ``headers=[]`` with ``add_message_id=False`` gives a message with an
    empty header section: the blank line, then the body.
    """
    items = list(headers.items() if isinstance(headers, Mapping) else headers or [])
    if headers is None:
        items.append(("Subject", "test message"))
    names = {_decode(name).lower() for name, _ in items}
    message_id: str | None = None
    if "message-id" in names:
        given = [_decode(v) for n, v in items if _decode(n).lower() == "message-id"]
        message_id = given[0].strip()
    elif add_message_id:
        message_id = f"<{uuid.uuid4().hex}@{MESSAGE_ID_DOMAIN}>"
        items.insert(0, ("Message-ID", message_id))
    lines = b"".join(
        _encode(name) + b": " + _encode(value) + b"\r\n" for name, value in items
    )
    body_bytes = re.sub(rb"\r?\n", b"\r\n", _encode(body))
    return lines + b"\r\n" + body_bytes, message_id


def send(
    port: int,
    *,
    host: str = "127.0.0.1",
    source: str | None = None,
    client_ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
    client_name: str | None = None,
    helo: Text = CLIENT_NAME,
    esmtp: bool = True,
    auth: tuple[str, str] | None = None,
    mail_from: Text = "sender@example.org",
    mail_params: Text = b"",
    rcpt_to: Sequence[Text] = ("rcpt@dest.example",),
    headers: Headers | None = None,
    body: Text = "Test body.\n",
    add_message_id: bool = True,
    timeout: float = SMTP_TIMEOUT,
) -> SendResult:
    """Run one SMTP session and return every reply; never raise on a rejection.

    ``source`` is the local address the connection comes from, a real
    client address (say 127.0.0.10, or ::1 with ``host="::1"``); ``client_ip``
    claims a client through XCLIENT instead (Postfix only; then EHLO again);
    ``auth`` is ``(user, password)`` for AUTH PLAIN. The session stops at the
    first step that fails in a way later steps depend on (XCLIENT, HELO, AUTH,
    MAIL); a rejected recipient does not stop the others. DATA is sent only if
    some recipient was accepted. ``headers=[]`` with ``add_message_id=False``
    sends a message with no header field at all (see build_message).
    """
    client = SmtpClient(host, port, timeout, source)
    result = SendResult(greeting=client.greeting)
    try:
        if _open(client, result, client_ip, client_name, helo, esmtp, auth):
            message, result.message_id = build_message(
                headers, body, add_message_id=add_message_id
            )
            _transaction(client, result, mail_from, mail_params, rcpt_to, message)
    finally:
        client.close()
    return result


def _open(
    client: SmtpClient,
    result: SendResult,
    client_ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    client_name: str | None,
    helo: Text,
    esmtp: bool,
    auth: tuple[str, str] | None,
) -> bool:
    """Greeting, (XCLIENT,) HELO and AUTH; return whether MAIL may follow."""
    if client.greeting.code != 220:
        return False
    if client_ip is not None:
        client.hello(CLIENT_NAME)
        result.xclient = client.xclient(str(client_ip), client_name)
        if result.xclient.code != 220:
            return False
    result.helo = client.hello(helo, esmtp=esmtp)
    if not result.helo.ok:
        return False
    if auth is not None:
        result.auth = client.auth_plain(*auth)
        return result.auth.ok
    return True


def _transaction(
    client: SmtpClient,
    result: SendResult,
    mail_from: Text,
    mail_params: Text,
    rcpt_to: Sequence[Text],
    message: bytes,
) -> None:
    """MAIL, each RCPT, then DATA if any recipient was accepted."""
    result.mail = client.mail(mail_from, mail_params)
    if not result.mail.ok:
        return
    for recipient in rcpt_to:
        reply = client.rcpt(recipient)
        result.rcpt[_decode(recipient)] = reply
        if reply is NO_REPLY:
            return
    if result.accepted_recipients:
        result.data, result.end_of_data = client.data(message)
