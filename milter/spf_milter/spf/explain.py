"""The explanation of a fail result (RFC 7208 §6.2).

It comes from the sender's DNS and ends up in SMTP replies and header
fields, so whatever goes wrong fetching it falls back to the default
explanation, and what comes out is one short line of printable ASCII.
"""

from __future__ import annotations

from collections.abc import Callable

from spf_milter.spf.errors import PermError
from spf_milter.spf.lookup import DnsError, Lookup
from spf_milter.spf.macro import MacroString, parse_macro_string


async def fetch_explanation(
    lookup: Lookup,
    domain: str,
    note: Callable[[str], None],
    parse: Callable[[str], MacroString],
) -> MacroString | None:
    """Return the explain-string published at ``domain``; None if unusable.

    §6.2: a DNS error, no record, more than one record or a syntax error
    all mean "proceed as if no exp modifier was given". ``parse`` parses
    an explain-string or raises PermError (the check's Memo.explain_string).
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
        return parse(texts[0].decode("ascii"))
    except (PermError, UnicodeDecodeError) as error:
        note(f"exp={domain}: {error}, using the default")
        return None


def parse_explanation(text: str) -> MacroString | PermError:
    """Parse an explain-string (§6.2); a PermError is returned, not raised.

    What a memo of it (memo.py) keeps: an error is as much its answer.
    """
    try:
        return parse_macro_string(text, explain=True)
    except PermError as error:
        return error


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
