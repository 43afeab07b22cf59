"""Macro-strings (RFC 7208 §7): parse once, expand per check.

A macro-string is parsed into a tuple of literal and macro parts when the
record is parsed, so that a syntax error anywhere in a record is found before
evaluation (§4.6) and expansion is a cheap walk over the parts.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Final

from spf_milter.spf.errors import PermError

# RFC 7208 §7.1: the letters allowed in any macro-string; "c", "r" and "t"
# only in the explanation text (§7.2, §7.3).
DOMAIN_LETTERS: Final = frozenset("sloidphv")
EXPLAIN_LETTERS: Final = DOMAIN_LETTERS | frozenset("crt")
DELIMITERS: Final = frozenset(".-+,/_=")

# RFC 3986 "unreserved": what URL escaping of upper-case macros keeps (§7.3).
_UNRESERVED: Final = "-._~"

# RFC 7208 §7.3: an expanded name longer than this loses labels on the left.
MAX_DOMAIN_LENGTH: Final = 253

# §7.1: "%{" macro-letter transformers *delimiter "}", transformers = *DIGIT
# ["r"]; ABNF strings are case-insensitive (RFC 5234 §2.3), so "R" too.
_MACRO_EXPAND = re.compile(r"%\{([A-Za-z])(\d*)([rR]?)([.\-+,/_=]*)\}", re.ASCII)
_SIMPLE_ESCAPES: Final = {"%%": "%", "%_": " ", "%-": "%20"}


@dataclass(frozen=True, slots=True)
class MacroExpand:
    """One ``%{...}`` macro: letter, transformers and delimiters (§7.1)."""

    letter: str
    keep: int | None
    reverse: bool
    delimiters: str
    url_escape: bool


Part = str | MacroExpand


@dataclass(frozen=True, slots=True)
class MacroString:
    """A parsed macro-string; ``text`` is the source as written.

    ``literal`` is the expansion when the string uses no macro letter (most
    domain-specs), so that evaluation can skip expansion; ``letters`` are
    the lower-case letters it uses.
    """

    text: str
    parts: tuple[Part, ...]
    ends_with_expand: bool = False
    literal: str | None = None
    letters: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MacroContext:
    """The values the macro letters stand for during one check (§7.3)."""

    sender: str  # s
    local_part: str  # l
    sender_domain: str  # o
    domain: str  # d
    ip_dotted: str  # i: dotted quad or dot-separated IPv6 nibbles
    ip_version: str  # v: "in-addr" or "ip6"
    helo: str  # h
    client_ip: str = ""  # c: the address in its usual text form
    receiver: str = "unknown"  # r
    timestamp: int = 0  # t
    validated_name: str = "unknown"  # p: filled in only when a string uses it

    def value(self, letter: str) -> str:
        """Return the value of a lower-case macro letter."""
        return str(getattr(self, _FIELD_OF_LETTER[letter]))


_FIELD_OF_LETTER: Final = {
    "s": "sender",
    "l": "local_part",
    "o": "sender_domain",
    "d": "domain",
    "i": "ip_dotted",
    "v": "ip_version",
    "h": "helo",
    "c": "client_ip",
    "r": "receiver",
    "t": "timestamp",
    "p": "validated_name",
}


def parse_macro_string(text: str, *, explain: bool = False) -> MacroString:
    """Parse ``text`` as a macro-string, or as an explain-string if ``explain``.

    Raise PermError on anything §7.1 does not allow: a ``%`` not starting a
    macro, an unknown letter, a zero digit transformer, or a character
    outside the macro-literal range (an explain-string also allows spaces).
    """
    letters = EXPLAIN_LETTERS if explain else DOMAIN_LETTERS
    parts: list[Part] = []
    literal: list[str] = []
    pos = 0
    ends_with_expand = False
    while pos < len(text):
        char = text[pos]
        ends_with_expand = char == "%"
        if char != "%":
            _check_literal(char, text, explain=explain)
            literal.append(char)
            pos += 1
            continue
        escape = text[pos : pos + 2]
        if escape in _SIMPLE_ESCAPES:
            literal.append(_SIMPLE_ESCAPES[escape])
            pos += 2
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        macro, pos = _parse_expand(text, pos, letters)
        parts.append(macro)
    if literal:
        parts.append("".join(literal))
    letters = frozenset(part.letter for part in parts if isinstance(part, MacroExpand))
    return MacroString(
        text=text,
        parts=tuple(parts),
        ends_with_expand=ends_with_expand,
        literal=None if letters else "".join(parts),  # type: ignore[arg-type]
        letters=letters,
    )


def _check_literal(char: str, text: str, *, explain: bool) -> None:
    # macro-literal = %x21-24 / %x26-7E; explain-string adds SP (§7.1, §6.2).
    if "\x21" <= char <= "\x7e" or (explain and char == " "):
        return
    raise PermError(f"invalid character {char!r} in {text!r}")


def _parse_expand(
    text: str, pos: int, letters: frozenset[str]
) -> tuple[MacroExpand, int]:
    found = _MACRO_EXPAND.match(text, pos)
    if found is None:
        raise PermError(f"invalid macro at {text[pos : pos + 12]!r} in {text!r}")
    letter, digits, reverse, delimiters = found.groups()
    if letter.lower() not in letters:
        raise PermError(f"macro letter {letter!r} is not allowed here in {text!r}")
    keep = int(digits) if digits else None
    if keep == 0:
        # §7.3: "If a DIGIT is specified, the value MUST be nonzero."
        raise PermError(f"zero transformer in {found.group()!r}")
    macro = MacroExpand(
        letter=letter.lower(),
        keep=keep,
        reverse=bool(reverse),
        delimiters=delimiters or ".",
        url_escape=letter.isupper(),
    )
    return macro, found.end()


def expand(macros: MacroString, context: MacroContext) -> str:
    """Expand a parsed macro-string against ``context`` (§7.3)."""
    out: list[str] = []
    for part in macros.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out.append(_expand_one(part, context.value(part.letter)))
    return "".join(out)


def _expand_one(macro: MacroExpand, value: str) -> str:
    if macro.keep is not None or macro.reverse or macro.delimiters != ".":
        labels = _split(value, macro.delimiters)
        if macro.reverse:
            labels.reverse()
        if macro.keep is not None:
            labels = labels[-macro.keep :]
        value = ".".join(labels)
    if macro.url_escape:
        raw = value.encode("utf-8", "surrogateescape")
        value = urllib.parse.quote_from_bytes(raw, safe=_UNRESERVED)
    return value


def _split(value: str, delimiters: str) -> list[str]:
    if len(delimiters) == 1:
        return value.split(delimiters)
    pattern = "[" + re.escape(delimiters) + "]"
    return re.split(pattern, value)


def truncate_domain(name: str) -> str:
    """Drop labels on the left until ``name`` fits in 253 characters (§7.3)."""
    while len(name) > MAX_DOMAIN_LENGTH and "." in name:
        name = name.split(".", 1)[1]
    return name
