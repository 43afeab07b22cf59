"""Parsing SPF records (RFC 7208 §4.5, §4.6, §12)."""

from __future__ import annotations

import pytest

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
