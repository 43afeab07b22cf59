"""The outcome of check_host(): the result token and why it came out."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Identity(enum.StrEnum):
    """The identity an SPF check is about (RFC 7208 §2.3, §2.4)."""

    HELO = "helo"
    MAILFROM = "mailfrom"


class SpfResult(enum.StrEnum):
    """The seven results of RFC 7208 §2.6; the values are the wire tokens."""

    NONE = "none"
    NEUTRAL = "neutral"
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What check_host() concluded for one identity.

    ``mechanism`` is the directive that matched, as written in the record
    (``-all``, ``include:_spf.example.org``), or ``default`` when none
    matched and the record has no ``redirect``. ``problem`` says what went
    wrong for permerror and temperror. ``explanation`` is set for fail only:
    the sanitised ``exp=`` text or the default explanation.
    """

    result: SpfResult
    domain: str
    mechanism: str | None = None
    explanation: str | None = None
    problem: str | None = None
    lookups: int = 0
    void_lookups: int = 0
