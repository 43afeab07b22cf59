"""Actions and SMTP replies: what the MTA and the SMTP client are told.

A configured action (RejectAction…) holds templates; render_action() turns
it into the action the milter carries out (Reject…) with a rendered reply.
Everything the client may see passes through here: templates are checked
when the policy is loaded, and every value substituted into them (HELO,
sender, a DNS explanation: all untrusted) is cut down to one short line of
printable ASCII. Pure: imports the standard library and spf_milter.spf only.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Final, assert_never

from spf_milter.spf import SpfResult

# libmilter's smfi_setreply caps a reply at MAXREPLYLEN (980); 400 stays
# within it even after milter_reply_text() doubles every "%".
MAX_REPLY_TEXT: Final = 400
MAX_VALUE_TEXT: Final = 200  # one substituted value (HELO, sender, exp=)

PLACEHOLDERS: Final = frozenset(
    {
        *("sender", "client_ip", "helo", "domain", "result", "identity"),
        *("explanation", "problem"),
    }
)

_STATUS = re.compile(r"([245])\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})")  # RFC 3463
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_CONTROL_RUN = re.compile(r"[\x00-\x1f\x7f]+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_SPACE_RUN = re.compile(" {2,}")


def clean_text(text: str, limit: int) -> str:
    """Return ``text`` as one line of printable ASCII of at most ``limit`` chars.

    Control characters (CR, LF, TAB, NUL…) become spaces, anything outside
    ASCII (8-bit bytes, surrogate escapes) becomes "?", runs of spaces
    collapse, and overlong text is cut and ends in "...".
    """
    text = _NON_ASCII.sub("?", _CONTROL_RUN.sub(" ", text))
    text = _SPACE_RUN.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_code_status(code: int, status: str) -> None:
    """Raise ValueError unless code is a 4xx/5xx reply and status matches it."""
    if isinstance(code, bool) or not 400 <= code <= 599 or code // 10 % 10 > 5:
        raise ValueError(f"reply code {code} is not a 4xx or 5xx SMTP reply code")
    match = _STATUS.fullmatch(status)
    if match is None:
        raise ValueError(
            f"enhanced status code '{status}' is not of the form X.Y.Z (RFC 3463)"
        )
    if int(match[1]) != code // 100:
        raise ValueError(
            f"enhanced status code {status} does not match reply code {code}"
            " (both must start with the same digit)"
        )


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """A rendered SMTP reply: ``550 5.7.23 text``.

    ``text`` is what the client sees. libmilter's smfi_setreply() treats "%"
    as a printf directive (a lone one makes it drop the text), so pass
    milter_reply_text(reply) to it, never ``text`` itself.
    """

    code: int
    status: str
    text: str

    def __post_init__(self) -> None:
        _check_code_status(self.code, self.status)
        if not 0 < len(self.text) <= MAX_REPLY_TEXT:
            raise ValueError(f"reply text must be 1 to {MAX_REPLY_TEXT} characters")
        if not _PRINTABLE.fullmatch(self.text):
            raise ValueError("reply text must be printable ASCII on one line")

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


def milter_reply_text(reply: SmtpReply) -> str:
    """Return the reply text for smfi_setreply(), with every "%" doubled."""
    return reply.text.replace("%", "%%")


@dataclass(frozen=True, slots=True)
class TextTemplate:
    """A string.Template over PLACEHOLDERS, checked when it is built."""

    source: str

    def __post_init__(self) -> None:
        if len(self.source) > MAX_REPLY_TEXT:
            raise ValueError(f"text is longer than {MAX_REPLY_TEXT} characters")
        for index, char in enumerate(self.source):
            if not " " <= char <= "~":
                raise ValueError(
                    f"character {char!r} at position {index + 1} is not printable ASCII"
                )
        template = string.Template(self.source)
        for match in template.pattern.finditer(self.source):
            if match.group("invalid") is not None:
                fragment = self.source[match.start() :].split(" ")[0][:20]
                raise ValueError(
                    f"'$' in '{fragment}' does not start a placeholder such as"
                    " ${domain} (write $$ for a literal $)"
                )
        for name in template.get_identifiers():
            if name not in PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder '${{{name}}}'"
                    f" (expected one of {', '.join(sorted(PLACEHOLDERS))})"
                )

    def render(self, values: Mapping[str, str]) -> str:
        """Substitute the (already cleaned) values; return one clean line.

        A text that comes out empty becomes "SPF <result>".
        """
        text = string.Template(self.source).substitute(values)
        return clean_text(text, MAX_REPLY_TEXT) or f"SPF {values['result']}"


@dataclass(frozen=True, slots=True)
class ReplyTemplate:
    """A configured reply: code, enhanced status code and a text template."""

    code: int
    status: str
    text: TextTemplate

    def __post_init__(self) -> None:
        _check_code_status(self.code, self.status)

    @classmethod
    def from_text(cls, text: str) -> ReplyTemplate:
        """Parse ``550 5.7.23 ${explanation}``; raise ValueError if malformed."""
        parts = text.split(" ", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].strip():
            raise ValueError(
                "expected '<code> <status> <text>', e.g. '550 5.7.23 ${explanation}'"
            )
        return cls(int(parts[0]), parts[1], TextTemplate(parts[2].strip()))

    def render(self, values: Mapping[str, str]) -> SmtpReply:
        """Return the reply with ``values`` substituted."""
        return SmtpReply(self.code, self.status, self.text.render(values))

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text.source}"


class ActionKind(enum.StrEnum):
    """What the MTA is told to do with the transaction."""

    ACCEPT = "accept"  # deliver; the SPF result only shows in the headers
    REJECT = "reject"  # 5xx
    DEFER = "defer"  # 4xx: the client tries again later
    QUARANTINE = "quarantine"  # accept into the MTA's hold queue


SEVERITY: Final[Mapping[ActionKind, int]] = MappingProxyType(
    {
        ActionKind.ACCEPT: 0,
        ActionKind.QUARANTINE: 1,
        ActionKind.DEFER: 2,
        ActionKind.REJECT: 3,
    }
)


@dataclass(frozen=True, slots=True)
class Accept:
    """Deliver the message; the SPF results only go into the headers."""

    kind: ClassVar[ActionKind] = ActionKind.ACCEPT


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse with a 5xx reply."""

    reply: SmtpReply
    kind: ClassVar[ActionKind] = ActionKind.REJECT

    def __post_init__(self) -> None:
        if self.reply.code // 100 != 5:
            raise ValueError(f"a reject needs a 5xx reply, got {self.reply.code}")


@dataclass(frozen=True, slots=True)
class Defer:
    """Refuse for now with a 4xx reply; the client retries later."""

    reply: SmtpReply
    kind: ClassVar[ActionKind] = ActionKind.DEFER

    def __post_init__(self) -> None:
        if self.reply.code // 100 != 4:
            raise ValueError(f"a defer needs a 4xx reply, got {self.reply.code}")


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Accept into the MTA's hold queue (smfi_quarantine) with a reason."""

    reason: str
    kind: ClassVar[ActionKind] = ActionKind.QUARANTINE


Action = Accept | Reject | Defer | Quarantine


@dataclass(frozen=True, slots=True)
class AcceptAction:
    """Configured: accept."""

    kind: ClassVar[ActionKind] = ActionKind.ACCEPT


@dataclass(frozen=True, slots=True)
class RejectAction:
    """Configured: reject with a 5xx reply template."""

    reply: ReplyTemplate
    kind: ClassVar[ActionKind] = ActionKind.REJECT

    def __post_init__(self) -> None:
        if self.reply.code // 100 != 5:
            raise ValueError(f"a reject reply must be 5xx, got {self.reply.code}")


@dataclass(frozen=True, slots=True)
class DeferAction:
    """Configured: defer with a 4xx reply template."""

    reply: ReplyTemplate
    kind: ClassVar[ActionKind] = ActionKind.DEFER

    def __post_init__(self) -> None:
        if self.reply.code // 100 != 4:
            raise ValueError(f"a defer reply must be 4xx, got {self.reply.code}")


@dataclass(frozen=True, slots=True)
class QuarantineAction:
    """Configured: quarantine with a reason template."""

    reason: TextTemplate
    kind: ClassVar[ActionKind] = ActionKind.QUARANTINE


ConfiguredAction = AcceptAction | RejectAction | DeferAction | QuarantineAction

# RFC 7372 §3.2: X.7.23 "SPF validation failed", X.7.24 "SPF validation error".
_DEFAULT_REPLIES: Final[Mapping[tuple[ActionKind, SpfResult], str]] = {
    (ActionKind.REJECT, SpfResult.FAIL): "550 5.7.23 ${explanation}",
    (ActionKind.DEFER, SpfResult.FAIL): "451 4.7.23 ${explanation}",
    (ActionKind.REJECT, SpfResult.PERMERROR): (
        "550 5.7.24 SPF permerror for ${domain}: ${problem}"
    ),
    (ActionKind.DEFER, SpfResult.PERMERROR): (
        "451 4.7.24 SPF permerror for ${domain}: ${problem}"
    ),
    (ActionKind.REJECT, SpfResult.TEMPERROR): (
        "550 5.7.24 SPF temperror for ${domain}: ${problem}"
    ),
    (ActionKind.DEFER, SpfResult.TEMPERROR): (
        "451 4.7.24 SPF temperror for ${domain}: ${problem}, try again later"
    ),
}
_OTHER_REPLIES: Final[Mapping[ActionKind, str]] = {
    ActionKind.REJECT: "550 5.7.1 SPF check of ${domain} returned ${result}",
    ActionKind.DEFER: (
        "451 4.7.1 SPF check of ${domain} returned ${result}, try again later"
    ),
}
DEFAULT_QUARANTINE_REASON: Final = (
    "SPF ${identity} check of ${domain} returned ${result}"
)


def default_reply(kind: ActionKind, result: SpfResult) -> ReplyTemplate:
    """Return the built-in reply for a reject or defer on ``result``."""
    text = _DEFAULT_REPLIES.get((kind, result)) or _OTHER_REPLIES[kind]
    return ReplyTemplate.from_text(text)


def default_action(kind: ActionKind, result: SpfResult) -> ConfiguredAction:
    """Return the action ``kind`` with its built-in reply or reason."""
    match kind:
        case ActionKind.ACCEPT:
            return AcceptAction()
        case ActionKind.REJECT:
            return RejectAction(default_reply(kind, result))
        case ActionKind.DEFER:
            return DeferAction(default_reply(kind, result))
        case ActionKind.QUARANTINE:
            return QuarantineAction(TextTemplate(DEFAULT_QUARANTINE_REASON))
    assert_never(kind)


def render_action(action: ConfiguredAction, values: Mapping[str, str]) -> Action:
    """Return the action with its reply or reason rendered from ``values``."""
    match action:
        case AcceptAction():
            return Accept()
        case RejectAction(reply=reply):
            return Reject(reply.render(values))
        case DeferAction(reply=reply):
            return Defer(reply.render(values))
        case QuarantineAction(reason=reason):
            return Quarantine(reason.render(values))
    assert_never(action)
