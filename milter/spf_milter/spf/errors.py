"""The two ways check_host() can end without a match (RFC 7208 §2.6.6, §2.6.7).

Both are raised deep in the evaluation and turned into a result in exactly
one place, check_host(); they never leave the engine.
"""

from __future__ import annotations

from typing import Final

# How much of a published text a problem quotes: problems reach logs and
# header fields, and a record can be 64 kB.
MAX_SHOWN: Final = 64


class SpfError(Exception):
    """An error that ends the evaluation of an SPF record."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class PermError(SpfError):
    """The published records could not be correctly interpreted (§2.6.7)."""


class TempError(SpfError):
    """A transient (generally DNS) error happened (§2.6.6)."""


def shown(text: str) -> str:
    """Return ``text`` quoted for a problem, cut to its first MAX_SHOWN characters."""
    if len(text) <= MAX_SHOWN:
        return repr(text)
    return repr(text[:MAX_SHOWN]) + "..."
