"""Pure helpers of the floor and contention parts of the load benchmark.

The null milters (bench/nullmilter.c, bench/nullpymilter.py) negotiate
what ours negotiates only if the terms read from ours survive the trip
through their command line; the CPU hog must stop on its own. bench/ is
not a package of the project, so the tests import it from the checkout's
root, which pytest's ``syspath_prepend`` puts on the path for them only.
"""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from types import ModuleType

import pytest

from helpers.milterwire import Action, Negotiated, Stage, Step

TOP = Path(__file__).resolve().parents[2]


def bench_module(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    """Import ``bench.<name>`` from this checkout."""
    monkeypatch.syspath_prepend(str(TOP))
    return importlib.import_module(f"bench.{name}")


def test_terms_survive_the_null_milters_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nullmilters = bench_module(monkeypatch, "nullmilters")
    nullpymilter = bench_module(monkeypatch, "nullpymilter")
    terms = Negotiated(
        6,
        Action.ADDHDRS | Action.SETSYMLIST,
        Step.NOBODY | Step.NR_HDR | Step.NR_CONN | Step.NODATA,
        {Stage.ENVFROM: ("i", "{auth_authen}"), Stage.CONNECT: ("{client_addr}",)},
    )
    parsed = nullpymilter.parse_terms(nullmilters.terms_args(terms))
    assert parsed.steps == int(terms.steps)
    assert parsed.actions == int(terms.actions)
    assert parsed.macro_lists == ((0, "{client_addr}"), (2, "i {auth_authen}"))


def test_terms_without_macro_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    nullmilters = bench_module(monkeypatch, "nullmilters")
    nullpymilter = bench_module(monkeypatch, "nullpymilter")
    terms = Negotiated(6, Action(0), Step(0))
    assert nullmilters.terms_args(terms) == ["0x0", "0x0"]
    assert nullpymilter.parse_terms(["0x0", "0x0"]).macro_lists == ()


def test_the_hog_stops_when_its_parent_is_not_the_one_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpuhog = bench_module(monkeypatch, "cpuhog")
    started = time.monotonic()
    assert cpuhog.spin(30.0, parent=os.getppid() + 1) == 0
    assert time.monotonic() - started < 5.0


def test_the_hog_stops_at_its_time_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    cpuhog = bench_module(monkeypatch, "cpuhog")
    started = time.monotonic()
    cpuhog.spin(0.05, parent=os.getppid())
    assert time.monotonic() - started < 5.0
