"""Macro-strings (RFC 7208 §7): parsing, expansion, the §7.4 examples."""

from __future__ import annotations

import ipaddress

import pytest

from helpers.growth import LINEAR_BOUND, growth
from spf_milter.spf.errors import PermError
from spf_milter.spf.macro import (
    MAX_DOMAIN_LENGTH,
    MacroContext,
    expand,
    expand_domain,
    expand_head,
    parse_macro_string,
    truncate_domain,
)
from spf_milter.spf.names import client_macros

# RFC 7208 §7.4: <sender> strong-bad@email.example.com, IPv4 192.0.2.3,
# IPv6 2001:db8::cb01, <domain> email.example.com.
SENDER = "strong-bad@email.example.com"


def _context(ip: str) -> MacroContext:
    return client_macros(
        ipaddress.ip_address(ip), SENDER, "mx.example.org", "mx.example.net"
    )


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{dR}", "com.example.email"),  # RFC 5234 §2.3: "r" is case-insensitive
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        (
            "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
            "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
        ),
        (
            "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
            "3.2.0.192.in-addr.strong.lp._spf.example.com",
        ),
        (
            "%{d2}.trusted-domains.example.net",
            "example.com.trusted-domains.example.net",
        ),
    ],
)
def test_rfc_examples_ipv4(macro: str, expected: str) -> None:
    assert expand(parse_macro_string(macro), _context("192.0.2.3")) == expected


def test_rfc_example_ipv6() -> None:
    spec = parse_macro_string("%{ir}.%{v}._spf.%{d2}")
    assert expand(spec, _context("2001:db8::cb01")) == (
        "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"
    )


def test_escapes_and_url_encoding_of_upper_case_letters() -> None:
    spec = parse_macro_string("%%%_%-%{S}", explain=True)
    context = client_macros(
        ipaddress.ip_address("192.0.2.3"), "a b+c@x.example", "h.example", "r.example"
    )
    assert expand(spec, context) == "% %20a%20b%2Bc%40x.example"


def test_exp_only_letters() -> None:
    spec = parse_macro_string("%{c} %{r} %{t}", explain=True)
    context = _context("2001:db8::cb01")
    assert expand(spec, context) == "2001:db8::cb01 mx.example.net 0"
    with pytest.raises(PermError):
        parse_macro_string("%{c}.example.org")


def test_multiple_delimiters_split_on_each() -> None:
    spec = parse_macro_string("%{l+-=}")
    context = client_macros(
        ipaddress.ip_address("192.0.2.3"), "a-b+c=d@x.example", "h.example", "r"
    )
    assert expand(spec, context) == "a.b.c.d"


def test_transformer_larger_than_label_count_keeps_all() -> None:
    assert expand(parse_macro_string("%{d99}"), _context("192.0.2.3")) == (
        "email.example.com"
    )


def test_literal_strings_are_marked_for_the_fast_path() -> None:
    assert parse_macro_string("_spf.example.org").literal == "_spf.example.org"
    assert parse_macro_string("100%%.example.org").literal == "100%.example.org"
    assert parse_macro_string("%{d}.example.org").literal is None


def test_long_expansion_drops_labels_on_the_left() -> None:
    name = ".".join(["a" * 60] * 5) + ".example.org"
    truncated = truncate_domain(name)
    assert len(truncated) <= 253
    assert name.endswith(truncated)
    assert truncated.startswith("a")


# -- bounded work: the text comes from the DNS (64 kB) or the client ---------


def _truncated_by_the_rfc(name: str) -> str:
    """§7.3 word for word: drop the leftmost label while the name is too long."""
    while len(name) > MAX_DOMAIN_LENGTH and "." in name:
        name = name.split(".", 1)[1]
    return name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a." * 300 + "example", id="short-labels"),
        pytest.param(("b" * 63 + ".") * 4 + "example.org", id="long-labels"),
        pytest.param("a" * 300, id="one-long-label"),
        pytest.param("a" * 300 + ".org", id="long-label-then-tld"),
        pytest.param("org." + "a" * 300, id="tld-then-long-label"),
        pytest.param("a." * 300, id="trailing-dot"),
        pytest.param("x" * 253, id="exactly-253"),
        pytest.param("." * 600, id="only-dots"),
    ],
)
def test_truncation_drops_labels_on_the_left_as_the_rfc_says(name: str) -> None:
    assert truncate_domain(name) == _truncated_by_the_rfc(name)


def test_truncation_time_grows_linearly() -> None:
    assert growth(lambda n: "a." * n, truncate_domain, 2000) < LINEAR_BOUND


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param("%{d}" * 200, id="many-d"),
        pytest.param("%{d}." * 200 + "example", id="many-d-labels"),
        pytest.param("x%{i}." * 100 + "%{d}", id="ends-with-macro"),
        pytest.param("%{s}.%{l}.%{h}.%{o}" * 30, id="sender-macros"),
        pytest.param("%{ir}.%{v}._spf.%{d2}", id="short"),
        pytest.param("%{d}" + "a" * 300, id="long-last-label"),
    ],
)
def test_domain_expansion_is_the_truncated_whole_expansion(spec: str) -> None:
    """expand_domain stops early, but names what truncating everything names.

    But for a last label too long for any DNS name: then only its tail.
    """
    macros = parse_macro_string(spec)
    context = _context("192.0.2.3")
    whole = truncate_domain(expand(macros, context))
    bounded = expand_domain(macros, context)
    if len(whole) <= MAX_DOMAIN_LENGTH:
        assert bounded == whole
    else:
        assert whole.endswith(bounded)
        assert len(bounded) > MAX_DOMAIN_LENGTH


def test_domain_expansion_time_does_not_grow_with_the_number_of_macros() -> None:
    context = _context("192.0.2.3")

    def make(n: int) -> object:
        return parse_macro_string("%{d}." * n + "example")

    ratio = growth(make, lambda macros: expand_domain(macros, context), 1000)
    assert ratio < LINEAR_BOUND / 4  # the same work at any size: about 1


def test_domain_expansion_of_a_huge_sender_grows_linearly() -> None:
    macros = parse_macro_string("%{l}.%{d}")

    def make(n: int) -> MacroContext:
        sender = "a." * n + "x@example.org"
        return client_macros(ipaddress.ip_address("192.0.2.3"), sender, "h", "r")

    assert growth(make, lambda context: expand_domain(macros, context), 2000) < (
        LINEAR_BOUND
    )


def test_explanation_expansion_stops_at_its_limit() -> None:
    macros = parse_macro_string("%{s} " * 10_000, explain=True)
    text = expand_head(macros, _context("192.0.2.3"), 100)
    assert text == expand(macros, _context("192.0.2.3"))[:100]


def test_macro_parsing_time_grows_linearly() -> None:
    def make(n: int) -> str:
        return "%{d2r+-}.%%%_%-x" * (n // 16) + "%{d" + "9" * n + "}"

    assert growth(make, parse_macro_string, 2000) < LINEAR_BOUND
