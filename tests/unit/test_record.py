"""Parsing SPF records (RFC 7208 §4.5, §4.6, §12)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from helpers.growth import LINEAR_BOUND, best_time, growth
from spf_milter.spf.errors import PermError
from spf_milter.spf.record import (
    A,
    All,
    Exists,
    Include,
    IpNetwork,
    Mx,
    Ptr,
    Qualifier,
    is_spf_record,
    parse_record,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(b"v=spf1", True, id="version-only"),
        pytest.param(b"v=spf1 -all", True, id="with-terms"),
        pytest.param(b"V=SPF1 -all", True, id="case-insensitive"),
        pytest.param(b"v=spf10 -all", False, id="spf10-is-not-spf1"),
        pytest.param(b"v=spf1-all", False, id="no-space"),
        pytest.param(b" v=spf1 -all", False, id="leading-space"),
        pytest.param(b"spf2.0/pra -all", False, id="sender-id"),
        pytest.param(b"", False, id="empty"),
    ],
)
def test_record_selection_needs_exact_version_then_space_or_end(
    text: bytes, expected: bool
) -> None:
    assert is_spf_record(text) is expected


def test_terms_keep_order_qualifiers_and_published_text() -> None:
    record = parse_record(
        b"v=spf1 +a ~mx:example.org ?ptr -include:_spf.example.org ~all"
    )
    assert [(d.qualifier, d.text) for d in record.directives] == [
        (Qualifier.PASS, "+a"),
        (Qualifier.SOFTFAIL, "~mx:example.org"),
        (Qualifier.NEUTRAL, "?ptr"),
        (Qualifier.FAIL, "-include:_spf.example.org"),
        (Qualifier.SOFTFAIL, "~all"),
    ]
    assert record.has_all


def test_mechanism_names_are_case_insensitive() -> None:
    record = parse_record(b"v=spf1 IP4:192.0.2.0/24 Include:example.org ALL")
    kinds = [type(d.mechanism) for d in record.directives]
    assert kinds == [IpNetwork, Include, All]


@pytest.mark.parametrize(
    ("term", "cidr4", "cidr6", "domain"),
    [
        pytest.param("a", 32, 128, None, id="bare"),
        pytest.param("a/24", 24, 128, None, id="ip4-cidr"),
        pytest.param("a//64", 32, 64, None, id="ip6-cidr"),
        pytest.param("a/24//64", 24, 64, None, id="dual-cidr"),
        pytest.param(
            "a:host.example.org/24//64", 24, 64, "host.example.org", id="domain"
        ),
        pytest.param("a:%{d}/0//0", 0, 0, "%{d}", id="macro-domain-zero-cidr"),
    ],
)
def test_a_takes_domain_and_dual_cidr(
    term: str, cidr4: int, cidr6: int, domain: str | None
) -> None:
    mechanism = parse_record(f"v=spf1 {term}".encode()).directives[0].mechanism
    assert isinstance(mechanism, A)
    assert (mechanism.cidr4, mechanism.cidr6) == (cidr4, cidr6)
    assert (mechanism.domain.text if mechanism.domain else None) == domain


def test_mx_ptr_exists_arguments() -> None:
    record = parse_record(
        b"v=spf1 mx:example.org/28 ptr ptr:example.org exists:%{i}.bl.test"
    )
    mx, ptr, ptr_domain, exists = (d.mechanism for d in record.directives)
    assert isinstance(mx, Mx)
    assert mx.cidr4 == 28
    assert isinstance(ptr, Ptr)
    assert ptr.domain is None
    assert isinstance(ptr_domain, Ptr)
    assert isinstance(exists, Exists)
    assert exists.domain.letters == frozenset("i")


def test_ip_networks_become_masked_integers() -> None:
    record = parse_record(b"v=spf1 ip4:192.0.2.77/24 ip6:2001:db8::1/32 ip4:10.0.0.1")
    ip4, ip6, host = (d.mechanism for d in record.directives)
    assert ip4 == IpNetwork(4, 0xC0000200, 0xFFFFFF00)
    assert ip6 == IpNetwork(6, 0x20010DB8 << 96, ((1 << 32) - 1) << 96)
    assert host == IpNetwork(4, 0x0A000001, 0xFFFFFFFF)


def test_modifiers_redirect_exp_and_unknown() -> None:
    record = parse_record(
        b"v=spf1 redirect=_spf.example.org exp=explain.%{d} moo=%{l}x"
    )
    assert record.directives == ()
    assert record.redirect is not None
    assert record.redirect.text == "_spf.example.org"
    assert record.explanation is not None
    assert record.explanation.text == "explain.%{d}"


def test_spaces_between_and_after_terms_are_allowed() -> None:
    record = parse_record(b"v=spf1  a   -all  ")
    assert [d.text for d in record.directives] == ["a", "-all"]


@pytest.mark.parametrize(
    "record",
    [
        pytest.param("v=spf1 foo", id="unknown-mechanism"),
        pytest.param("v=spf1 all:example.org", id="all-with-argument"),
        pytest.param("v=spf1 include", id="include-without-domain"),
        pytest.param("v=spf1 include:", id="include-empty-domain"),
        pytest.param("v=spf1 a:museum", id="single-label-domain"),
        pytest.param("v=spf1 a:example.123", id="numeric-toplabel"),
        pytest.param("v=spf1 a:example.-org", id="bad-toplabel"),
        pytest.param("v=spf1 a/33", id="ip4-cidr-too-long"),
        pytest.param("v=spf1 a//129", id="ip6-cidr-too-long"),
        pytest.param("v=spf1 a/024", id="cidr-leading-zero"),
        pytest.param("v=spf1 ip4:192.0.2.0/", id="empty-cidr"),
        pytest.param("v=spf1 ip4:192.0.2", id="short-ip4"),
        pytest.param("v=spf1 ip4:192.0.2.256", id="ip4-octet-too-big"),
        pytest.param("v=spf1 ip4:192.0.02.1", id="ip4-leading-zero"),
        pytest.param("v=spf1 ip4:2001:db8::1", id="ip6-in-ip4"),
        pytest.param("v=spf1 ip6:192.0.2.1", id="ip4-in-ip6"),
        pytest.param("v=spf1 ip6:fe80::1%eth0", id="ip6-zone-index"),
        pytest.param(
            "v=spf1 redirect=a.example redirect=b.example", id="two-redirects"
        ),
        pytest.param("v=spf1 exp=a.example exp=b.example", id="two-exps"),
        pytest.param("v=spf1 exp=", id="empty-exp"),
        pytest.param("v=spf1 moo=%{z}", id="unknown-modifier-bad-macro"),
        pytest.param("v=spf1 a:%{c}.example.org", id="c-macro-outside-exp"),
        pytest.param("v=spf1 exists:%{l0}.example.org", id="zero-transformer"),
        pytest.param("v=spf1 exists:%{l", id="unterminated-macro"),
        pytest.param("v=spf1 exists:100%.example.org", id="bare-percent"),
        pytest.param("v=spf1 -all\t", id="tab"),
        pytest.param("v=spf1 =foo", id="modifier-without-name"),
        pytest.param("v=spf1 -", id="lone-qualifier"),
    ],
)
def test_syntax_errors_anywhere_are_permerror(record: str) -> None:
    with pytest.raises(PermError):
        parse_record(record.encode())


def test_non_ascii_record_is_permerror() -> None:
    with pytest.raises(PermError, match="non-ASCII"):
        parse_record("v=spf1 a:caf\u00e9.example -all".encode())


# -- bounded work on hostile records (the largest fits one 64 kB TCP answer) --

MAX_RECORD = 65_000  # octets of TXT in one DNS message over TCP, near enough


def _parse_or_permerror(text: bytes) -> None:
    with contextlib.suppress(PermError):
        parse_record(text)


HOSTILE_TERMS = {
    "toplabel-backtracking": lambda n: b"include:." + b"a" * n + b"!",
    "hyphen-toplabel-backtracking": lambda n: b"include:.a" + b"-a" * (n // 2) + b"-",
    "many-dots": lambda n: b"a:" + b"a." * (n // 2) + b"1",
    "many-dots-and-cidr": lambda n: b"mx:" + b"a." * (n // 2) + b"1/24//64",
    "long-cidr": lambda n: b"a/" + b"1" * n,
    "long-dual-cidr": lambda n: b"a/1//" + b"1" * n,
    "long-ip6": lambda n: b"ip6:" + b"1:" * (n // 2),
    "long-ip4-cidr": lambda n: b"ip4:192.0.2.0/" + b"9" * n,
    "macro-digits": lambda n: b"exists:%{d" + b"9" * n + b"}.example",
    "many-macros": lambda n: b"exists:" + b"%{d}" * (n // 4) + b".example",
    "unknown-modifier": lambda n: b"x=" + b"%{d}" * (n // 4),
    "many-terms": lambda n: b" ".join([b"ip4:192.0.2.1"] * (n // 14)),
}


@pytest.mark.parametrize("make", HOSTILE_TERMS.values(), ids=HOSTILE_TERMS.keys())
def test_parsing_time_grows_linearly_with_the_record(
    make: Callable[[int], bytes],
) -> None:
    ratio = growth(lambda n: b"v=spf1 " + make(n) + b" -all", _parse_or_permerror, 1000)
    assert ratio < LINEAR_BOUND


@pytest.mark.parametrize("make", HOSTILE_TERMS.values(), ids=HOSTILE_TERMS.keys())
def test_a_hostile_record_of_the_largest_size_costs_no_more_than_a_plain_one(
    make: Callable[[int], bytes],
) -> None:
    plain = b"v=spf1 " + b" ".join([b"ip4:192.0.2.1"] * (MAX_RECORD // 14))
    hostile = b"v=spf1 " + make(MAX_RECORD - 30)
    assert len(hostile) <= MAX_RECORD
    baseline = best_time(lambda: _parse_or_permerror(plain), repeat=3)
    assert best_time(lambda: _parse_or_permerror(hostile), repeat=1) < 10 * baseline


@pytest.mark.parametrize(
    "term",
    [
        pytest.param("a/" + "1" * 5000, id="cidr4"),
        pytest.param("a//" + "1" * 5000, id="cidr6"),
        pytest.param("ip4:192.0.2.0/" + "3" * 5000, id="ip4-cidr"),
        pytest.param("ip6:2001:db8::/" + "1" * 5000, id="ip6-cidr"),
        pytest.param("exists:%{d" + "1" * 5000 + "}.example", id="macro-digits"),
        pytest.param("exists:%{d" + "0" * 5000 + "}.example", id="macro-zero"),
    ],
)
def test_numbers_too_long_for_int_are_permerror_or_parsed(term: str) -> None:
    """Python's int() refuses more than 4,300 digits; the record must not care."""
    problem = ""
    try:
        parse_record(f"v=spf1 {term} -all".encode())
    except PermError as error:
        problem = error.problem
    assert len(problem) < 200  # the problem quotes a piece, not 5 kB


def test_a_long_macro_digit_count_keeps_every_label() -> None:
    record = parse_record(b"v=spf1 exists:%{d" + b"9" * 5000 + b"}.example -all")
    assert isinstance(record.directives[0].mechanism, Exists)


@pytest.mark.parametrize(
    ("domain", "valid"),
    [
        ("example.org", True),
        ("example.org.", True),
        ("example.123", False),
        ("example.1-2", True),
        ("example.-a", False),
        ("example.a-", False),
        ("example.a--b", True),
        ("example.", False),
        ("example..", False),
        ("example.org..", False),
        ("example.o_g", False),
        ("example", False),
        (".org", True),
    ],
)
def test_domain_end_is_a_dot_and_a_toplabel(domain: str, valid: bool) -> None:
    try:
        parse_record(f"v=spf1 include:{domain}".encode())
    except PermError:
        assert not valid
    else:
        assert valid
