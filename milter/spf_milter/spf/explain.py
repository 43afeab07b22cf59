"""The explanation of a fail result (RFC 7208 §6.2).

It comes from the sender's DNS and ends up in SMTP replies and header
fields, so whatever goes wrong fetching it falls back to the default
explanation, and what comes out is one short line of printable ASCII.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from spf_milter.spf.errors import PermError
from spf_milter.spf.lookup import DnsError, Lookup
from spf_milter.spf.macro import MacroString, parse_macro_string
from spf_milter.spf.memo import SizedMemo, text_cost


async def fetch_explanation(
    lookup: Lookup, domain: str, note: Callable[[str], None]
) -> MacroString | None:
    """Return the explain-string published at ``domain``; None if unusable.

    §6.2: a DNS error, no record, more than one record or a syntax error
    all mean "proceed as if no exp modifier was given".
    """
    try:
        texts = await lookup.txt(domain)
    except DnsError as error:
        note(f"exp={domain}: {error.reason}, using the default")
        return None
    if len(texts) != 1:
        note(f"exp={domain}: {len(texts)} TXT records, using the default")
        return None
    try:
        return parse_explain_string(texts[0].decode("ascii"))
    except (PermError, UnicodeDecodeError) as error:
        note(f"exp={domain}: {error}, using the default")
        return None


# The parsed explain-strings kept, at most (an estimate, memo.py).
EXPLAIN_MEMO_BYTES: Final = 4 * 1024 * 1024


def _parse_explain(text: str) -> MacroString | PermError:
    try:
        return parse_macro_string(text, explain=True)
    except PermError as error:
        return error


def _explain_cost(text: str) -> int:
    return text_cost(len(text))


_parse_explain_string: Final = SizedMemo(
    _parse_explain, _explain_cost, EXPLAIN_MEMO_BYTES
)


def parse_explain_string(text: str) -> MacroString:
    """Parse an explain-string (§6.2), once per distinct text; PermError if bad."""
    parsed = _parse_explain_string(text)
    if isinstance(parsed, PermError):
        raise PermError(parsed.problem)
    return parsed


def sanitise_explanation(text: str, max_length: int) -> str:
    """Return ``text`` as one line of printable ASCII of at most ``max_length``.

    The explanation comes from the sender's DNS and is placed in SMTP replies
    and header fields: control characters (CR, LF, NUL, ...) and 8-bit
    characters become "?".
    """
    if text.isascii() and text.isprintable():
        cleaned = text.strip()  # the usual case: nothing to replace
    else:
        cleaned = "".join(c if " " <= c <= "~" else "?" for c in text).strip()
    if len(cleaned) > max_length:
        cleaned = cleaned[: max_length - 3].rstrip() + "..."
    return cleaned
