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

from spf_milter.spf.errors import PermError, shown

# RFC 7208 §7.1: the letters allowed in any macro-string; "c", "r" and "t"
# only in the explanation text (§7.2, §7.3).
DOMAIN_LETTERS: Final = frozenset("sloidphv")
EXPLAIN_LETTERS: Final = DOMAIN_LETTERS | frozenset("crt")
DELIMITERS: Final = frozenset(".-+,/_=")

# RFC 3986 "unreserved": what URL escaping of upper-case macros keeps (§7.3).
_UNRESERVED: Final = "-._~"

# RFC 7208 §7.3: an expanded name longer than this loses labels on the left.
MAX_DOMAIN_LENGTH: Final = 253
# A digit transformer keeps that many labels (§7.3); a value has no more
# labels than characters, so any count past this keeps them all, and a
# longer digit string is never handed to int() (it refuses 4,300 digits).
_MAX_KEEP_DIGITS: Final = 9
_KEEP_ALL: Final = 10**_MAX_KEEP_DIGITS

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
    raise PermError(f"invalid character {char!r} in {shown(text)}")


def _parse_expand(
    text: str, pos: int, letters: frozenset[str]
) -> tuple[MacroExpand, int]:
    found = _MACRO_EXPAND.match(text, pos)
    if found is None:
        raise PermError(f"invalid macro at {text[pos : pos + 12]!r} in {shown(text)}")
    letter, digits, reverse, delimiters = found.groups()
    if letter.lower() not in letters:
        raise PermError(f"macro letter {letter!r} is not allowed here in {shown(text)}")
    keep = _keep(digits, found.group())
    macro = MacroExpand(
        letter=letter.lower(),
        keep=keep,
        reverse=bool(reverse),
        delimiters=delimiters or ".",
        url_escape=letter.isupper(),
    )
    return macro, found.end()


def _keep(digits: str, macro: str) -> int | None:
    """Return the number of labels a digit transformer keeps; None for all."""
    if not digits:
        return None
    significant = digits.lstrip("0")
    if not significant:
        # §7.3: "If a DIGIT is specified, the value MUST be nonzero."
        raise PermError(f"zero transformer in {shown(macro)}")
    if len(significant) > _MAX_KEEP_DIGITS:
        return _KEEP_ALL
    return int(significant)


def expand(macros: MacroString, context: MacroContext) -> str:
    """Expand a parsed macro-string against ``context`` (§7.3), all of it.

    For names and explanations, which only keep one end of the expansion,
    expand_domain and expand_head bound the work by what is kept.
    """
    out: list[str] = []
    for part in macros.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out.append(_expand_one(part, context.value(part.letter)))
    return "".join(out)


def expand_domain(macros: MacroString, context: MacroContext) -> str:
    """Return the name a domain-spec expands to, shortened as §7.3 says.

    Truncation keeps at most the rightmost MAX_DOMAIN_LENGTH characters,
    so the parts are expanded right to left, and only until two characters
    more than that are known: a record of 16,000 ``%{d}`` costs what two
    do. The name comes out as truncate_domain() would make it of the whole
    expansion, but for a last label longer than MAX_DOMAIN_LENGTH (which
    no DNS name can hold): then it is only that label's tail.
    """
    keep = MAX_DOMAIN_LENGTH + 2
    out: list[str] = []
    length = 0
    for part in reversed(macros.parts):
        piece = (
            part
            if isinstance(part, str)
            else _expand_one(part, context.value(part.letter))
        )
        out.append(piece)
        length += len(piece)
        if length >= keep:
            break
    out.reverse()
    return truncate_domain("".join(out)[-keep:])


def expand_head(macros: MacroString, context: MacroContext, limit: int) -> str:
    """Return the first ``limit`` characters of the expansion of ``macros``.

    For an explanation, which is cut short anyway: the parts after the
    first ``limit`` characters are never expanded.
    """
    out: list[str] = []
    length = 0
    for part in macros.parts:
        piece = (
            part
            if isinstance(part, str)
            else _expand_one(part, context.value(part.letter))
        )
        out.append(piece)
        length += len(piece)
        if length >= limit:
            break
    return "".join(out)[:limit]


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
    """Drop labels on the left until ``name`` fits in 253 characters (§7.3).

    In one pass: the result starts after the first dot that leaves at most
    MAX_DOMAIN_LENGTH characters; with no such dot, labels are dropped
    until none is left to drop, leaving the last label.
    """
    if len(name) <= MAX_DOMAIN_LENGTH:
        return name
    dot = name.find(".", len(name) - MAX_DOMAIN_LENGTH - 1)
    if dot >= 0:
        return name[dot + 1 :]
    return name.rpartition(".")[2]
