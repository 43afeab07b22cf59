"""Strict parsers for the header fields the milter writes, for tests.

Received-SPF (RFC 7208 §9.1) is read by a small strict parser of our own;
Authentication-Results (RFC 8601) by the independent ``authres`` package,
both leniently and with its strict flag, which must agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import authres

_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_QUOTED = r'"(?:[ !#-\[\]-~]|\\[\t -~])*"'  # RFC 5322 §3.2.4, ASCII, unfolded
_PAIR = re.compile(
    rf"(?P<key>[A-Za-z][A-Za-z0-9_.-]*)=(?P<value>{_DOT_ATOM}|{_QUOTED})"
)
_HEAD = re.compile(r"(?P<result>[a-z]+)[ \t]+\((?P<comment>[^()\\]*)\)[ \t]+")


@dataclass(frozen=True)
class ReceivedSpf:
    """A Received-SPF value as read back by the strict test parser."""

    result: str
    comment: str
    pairs: dict[str, str]


def unfold(value: str) -> str:
    """Undo folding (RFC 5322 §2.2.3): drop a line break before WSP."""
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def unescape(quoted: str) -> str:
    """Turn quoted-pairs back into the characters they stand for."""
    return re.sub(r"\\(.)", r"\1", quoted)


def parse_received_spf(value: str) -> ReceivedSpf:
    """Parse ``result (comment) key=value; ...`` strictly; fail on anything else."""
    text = unfold(value)
    head = _HEAD.match(text)
    assert head is not None, f"no result and comment in {text!r}"
    pairs: dict[str, str] = {}
    pos = head.end()
    while True:
        pair = _PAIR.match(text, pos)
        assert pair is not None, f"bad key-value-pair at {text[pos : pos + 40]!r}"
        raw = pair["value"]
        assert pair["key"] not in pairs, f"duplicate key {pair['key']}"
        pairs[pair["key"]] = unescape(raw[1:-1]) if raw.startswith('"') else raw
        pos = pair.end()
        if pos == len(text):
            return ReceivedSpf(head["result"], head["comment"], pairs)
        separator = re.compile(r";[ \t]*").match(text, pos)
        assert separator is not None, f"expected ';' at {text[pos : pos + 40]!r}"
        pos = separator.end()


class StrictHeader(authres.core.AuthenticationResultsHeader):  # type: ignore[misc]
    """authres's header class with its own strict flag set (see module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.strict = True


def parse_auth_results(value: str) -> Any:
    """Parse an A-R value with authres, strictly."""
    field = "Authentication-Results: " + value
    lenient = authres.AuthenticationResultsHeader.parse(field)
    strict = StrictHeader.parse(authres.core_features(), field)
    assert lenient.authserv_id == strict.authserv_id
    assert clauses(lenient) == clauses(strict)
    return strict


def clauses(header: Any) -> list[tuple[str, str, str | None, list[tuple[str, str]]]]:
    """Summarise parsed resinfos as (method, result, reason, [(ptype.prop, value)])."""
    return [
        (
            result.method,
            result.result,
            None if result.reason is None else unescape(result.reason),
            [(f"{p.type}.{p.name}", unescape(p.value)) for p in result.properties],
        )
        for result in header.results
    ]
