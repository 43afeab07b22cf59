"""Macro-strings (RFC 7208 §7): parsing, expansion, the §7.4 examples."""

from __future__ import annotations

import ipaddress

import pytest

from spf_milter.spf.errors import PermError
from spf_milter.spf.macro import (
    MacroContext,
    expand,
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
