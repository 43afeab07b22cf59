"""A do-nothing pymilter milter: the floor of a milter in Python.

    python -m bench.nullpymilter SOCKET STEPS ACTIONS [STAGE:MACROS ...]

It answers CONTINUE to every event (NOREPLY where the steps ask for no
reply) and adds nothing. Like bench/nullmilter.c, whose arguments it
shares, it negotiates exactly the steps, actions and macro lists it is
given (offered ones only), which bench/nullmilters.py reads from our
milter, so the MTA sends it what it sends ours. What remains of ours'
cost above it is our own code; what this costs is pymilter's and
libmilter's share.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import Milter


@dataclass(frozen=True, slots=True)
class Terms:
    """What to negotiate: SMFIP_* steps, SMFIF_* actions, macro lists."""

    steps: int
    actions: int
    macro_lists: tuple[tuple[int, str], ...] = ()


def parse_terms(args: Sequence[str]) -> Terms:
    """Parse ``STEPS ACTIONS [STAGE:MACROS ...]`` (numbers as int() reads them)."""
    steps, actions, *lists = args
    pairs = []
    for spec in lists:
        stage, sep, names = spec.partition(":")
        if not sep:
            raise ValueError(f"not STAGE:MACROS: {spec!r}")
        pairs.append((int(stage), names))
    return Terms(int(steps, 0), int(actions, 0), tuple(pairs))


class NullMilter(Milter.Base):  # type: ignore[misc]
    """Continue on everything; negotiate the given terms."""

    def __init__(self, terms: Terms) -> None:
        super().__init__()
        self.terms = terms

    def negotiate(self, opts: list[int]) -> int:
        """Keep the offered part of the terms; ask for the macro lists."""
        opts[0] = self._actions = self.terms.actions & opts[0]
        opts[1] = self._protocol = self.terms.steps & opts[1]
        opts[2] = opts[3] = 0
        for stage, names in self.terms.macro_lists:
            self._ctx.setsymlist(stage, names)  # str: see spf_milter/callbacks.py
        return int(Milter.CONTINUE)

    def _answer(self, no_reply: int) -> int:
        return int(Milter.NOREPLY if self._protocol & no_reply else Milter.CONTINUE)

    def connect(self, *args: Any) -> int:
        return self._answer(Milter.P_NR_CONN)

    def hello(self, *args: Any) -> int:
        return self._answer(Milter.P_NR_HELO)

    def envfrom(self, *args: Any) -> int:
        return self._answer(Milter.P_NR_MAIL)

    def envrcpt(self, *args: Any) -> int:
        return self._answer(Milter.P_NR_RCPT)

    def data(self) -> int:
        return self._answer(Milter.P_NR_DATA)

    def header(self, *args: Any) -> int:
        return self._answer(Milter.P_NR_HDR)

    def eoh(self) -> int:
        return self._answer(Milter.P_NR_EOH)

    def body(self, *args: Any) -> int:
        return self._answer(Milter.P_NR_BODY)

    def unknown(self, *args: Any) -> int:
        return self._answer(Milter.P_NR_UNKN)

    def eom(self) -> int:
        return int(Milter.CONTINUE)

    def abort(self) -> int:
        return int(Milter.CONTINUE)

    def close(self) -> int:
        return int(Milter.CONTINUE)


def main(argv: Sequence[str]) -> int:
    """Listen on ``argv[0]`` and negotiate the terms that follow."""
    if len(argv) < 3:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 64
    terms = parse_terms(argv[1:])
    os.umask(0)  # the MTA (Postfix's smtpd) connects as another user
    Milter.factory = functools.partial(NullMilter, terms)  # pymilter's one global
    Milter.runmilter("nullpymilter", argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
