"""Memos of parsed texts: bounded by the bytes their entries cost, not by count."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import pytest

from spf_milter.spf.errors import PermError
from spf_milter.spf.macro import parse_macro_string
from spf_milter.spf.memo import (
    EXPLAIN_MEMO_BYTES,
    RECORD_MEMO_BYTES,
    Memo,
    SizedMemo,
    text_cost,
)
from spf_milter.spf.record import parse_record

MAX_RECORD = 65_000


def _memory_of(build: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        kept = build()
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept is not None
    return used


RECORDS = {
    "ip4": lambda n: b" ".join(b"ip4:10.%d.%d.0/24" % divmod(i, 256) for i in range(n)),
    "a": lambda n: b" ".join([b"a"] * (4 * n)),
    "mx-macro": lambda n: b" ".join([b"mx:%{d}.x"] * n),
    "exists-many-d": lambda n: b"exists:" + b"%{d}" * (3 * n),
    "literal": lambda n: b" ".join([b"a:%%%%.x"] * n),
    "ip6": lambda n: b" ".join([b"ip6:2001:db8::/32"] * n),
}


@pytest.mark.parametrize("make", RECORDS.values(), ids=RECORDS.keys())
def test_a_record_costs_no_more_than_its_estimate(
    make: Callable[[int], bytes],
) -> None:
    text = b"v=spf1 " + make(6_000)[: MAX_RECORD - 20].rpartition(b" ")[0]
    assert _memory_of(lambda: parse_record(text)) <= text_cost(len(text))


@pytest.mark.parametrize(
    "text", ["%{s} " * 12_000, "x" * 60_000, "%{i}%_%%" * 7_000, "%{S}" * 15_000]
)
def test_an_explanation_costs_no_more_than_its_estimate(text: str) -> None:
    memory = _memory_of(lambda: parse_macro_string(text, explain=True))
    assert memory <= text_cost(len(text))


def test_a_memo_keeps_its_bytes_under_the_bound_and_drops_the_oldest() -> None:
    calls: list[str] = []

    def compute(text: str) -> str:
        calls.append(text)
        return text.upper()

    memo: SizedMemo[str, str] = SizedMemo(compute, len, max_bytes=100)
    for word in ("a" * 25, "b" * 25, "c" * 25, "d" * 25, "e" * 25):
        assert memo(word) == word.upper()
        assert memo.bytes <= 100
    assert (len(memo), memo.bytes) == (4, 100)
    memo("b" * 25)  # kept
    memo("a" * 25)  # dropped first: computed again
    assert calls == [*(c * 25 for c in "abcde"), "a" * 25]


def test_a_memo_does_not_keep_an_entry_of_more_than_a_quarter_of_it() -> None:
    calls: list[str] = []

    def compute(text: str) -> str:
        calls.append(text)
        return text

    memo: SizedMemo[str, str] = SizedMemo(compute, len, max_bytes=100)
    memo("x" * 26)
    memo("x" * 26)
    memo("y" * 25)
    memo("y" * 25)
    assert calls == ["x" * 26, "x" * 26, "y" * 25]
    assert memo.bytes == 25


def test_distinct_large_records_stay_within_the_record_memo() -> None:
    """100 distinct 63 kB records took 470 MB in a memo bounded by count."""
    memo = Memo()
    for n in range(30):
        body = b" ".join([b"mx:%{d}.x"] * 6_300)
        memo.records((b"v=spf1 exists:n%d.example " % n + body,))
        assert memo.records.bytes <= RECORD_MEMO_BYTES
    assert 0 < len(memo.records) < 30


def test_distinct_explanations_stay_within_their_memo() -> None:
    memo = Memo()
    for n in range(40):  # 40 of 3 kB cost 10 MB: more than the bound
        memo.explain_string(f"{n} " + "%{s} " * 600)
        assert memo.explanations.bytes <= EXPLAIN_MEMO_BYTES
    assert 0 < len(memo.explanations) < 40


def test_a_memo_gives_what_parsing_gives_and_keeps_it() -> None:
    memo = Memo()
    answer = (b"other text", b"v=spf1 a -all")
    record = memo.records(answer)
    assert record == parse_record(b"v=spf1 a -all")
    assert memo.records(answer) is record
    error = memo.records((b"v=spf1 a", b"v=spf1 mx"))
    assert isinstance(error, PermError)
    assert error.problem == "2 SPF records, not one"
    assert memo.normalise_domain("Example.ORG.") == "Example.ORG"
    assert memo.normalise_domain("b\u00fccher.example") == "xn--bcher-kva.example"
    assert memo.normalise_domain("x" * 254) is None
    assert memo.is_queryable("a.example")
    assert not memo.is_queryable("a..example")
    assert not memo.is_queryable("a" * 64 + ".example")
    with pytest.raises(PermError):
        memo.explain_string("%{z}")


def test_a_memo_keeping_nothing_parses_every_time() -> None:
    memo = Memo.keeping_nothing()
    answer = (b"v=spf1 a -all",)
    assert memo.records(answer) == memo.records(answer)
    assert memo.records(answer) is not memo.records(answer)
    assert memo.normalise_domain("example.org") == "example.org"
    memo.explain_string("%{s}")
    assert (len(memo.records), len(memo.explanations)) == (0, 0)
