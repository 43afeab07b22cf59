"""Tests for spf_milter.headers: Received-SPF and Authentication-Results values.

Rendered A-R values are read back with ``authres`` 1.2.0, an independent
RFC 8601 parser. Its limits, and how these tests work around them:

* ``parse()`` is lenient: it silently skips a propspec it cannot parse. We
  parse through a subclass that sets authres's own ``strict`` flag, so junk
  fails the test instead of vanishing.
* It reads the authserv-id as a dot-atom only, so a quoted-string id (valid
  per RFC 8601 §2.5) is a syntax error; ids given to authres here are host
  names, and quoted ids are checked with our own extract_authserv_id().
* It returns quoted-string contents with their quoted-pairs still escaped;
  ``unescape`` undoes that before comparing.
* It rejects an empty quoted ``reason=""`` (the renderer leaves empty
  reasons out anyway), and it reads an empty ``smtp.helo=""`` but cannot
  print it again (``str()`` raises), so parsed headers are compared by
  their fields, never re-serialised.
* It knows no RFC 6532 UTF-8; the renderer emits ASCII only.

Received-SPF values are read back with ``parse_received_spf`` below, a small
strict parser for RFC 7208 §9.1 (with erratum 5436) that also refuses any
parenthesis or backslash inside the comment.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import authres
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from helpers.headerparse import (
    clauses,
    parse_auth_results,
    parse_received_spf,
    unfold,
)
from spf_milter.headers import (
    MAX_LINE_OCTETS,
    MAX_TEXT_CHARS,
    TRUNCATION_MARKER,
    extract_authserv_id,
    is_our_authserv_id,
    is_valid_authserv_id,
    render_authentication_results,
    render_received_spf,
)
from spf_milter.spf.result import CheckResult, Identity, SpfResult

IP4 = ip_address("192.0.2.1")
IP6 = ip_address("2001:db8::25")
RECEIVER = "mybox.example.org"
SENDER = "myname@example.com"
HELO = "foo.example.com"


def _received_spf(**overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "identity": Identity.MAILFROM,
        "client_ip": IP4,
        "envelope_from": SENDER,
        "helo": HELO,
        "receiver": RECEIVER,
    }
    return render_received_spf(**(arguments | overrides))


def _auth_results(**overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "authserv_id": RECEIVER,
        "mailfrom_address": SENDER,
        "helo_name": HELO,
    }
    return render_authentication_results(**(arguments | overrides))


def _expected_clean(text: str) -> str:
    """What the module docstring promises for an untrusted value."""
    if len(text) > MAX_TEXT_CHARS:
        text = text[: MAX_TEXT_CHARS - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER
    return re.sub(r"[^\x20-\x7e]", "?", text, flags=re.ASCII)


def _expected_ar_text(text: str, *, keep_equals: bool) -> str:
    """An A-R value holds no ``;``, and no ``=`` but in smtp.mailfrom."""
    text = _expected_clean(text).replace(";", "?")
    return text if keep_equals else text.replace("=", "?")


def _assert_one_safe_field(name: str, value: str) -> None:
    """Check the value is one header field: folds only, ASCII, short lines."""
    assert "\r" not in value
    assert "\n" not in value.replace("\n\t", "")
    assert re.fullmatch(r"[\x20-\x7e]*", value.replace("\n\t", "")), repr(value)
    assert "\n" not in unfold(value)
    lines = (name + ": " + value).split("\n")
    assert all(len(line.encode()) <= MAX_LINE_OCTETS for line in lines)
    assert all(line.strip() for line in lines), "a folded line is blank"


# --- Received-SPF: exact values (RFC 7208 §9.1) -----------------------------

RECEIVED_SPF_CASES = [
    pytest.param(
        {"result": CheckResult(SpfResult.PASS, "example.com", mechanism="mx")},
        "pass (mybox.example.org: domain of myname@example.com designates\n"
        "\t192.0.2.1 as permitted sender) receiver=mybox.example.org;\n"
        '\tclient-ip=192.0.2.1; envelope-from="myname@example.com";\n'
        "\thelo=foo.example.com; mechanism=mx; identity=mailfrom",
        id="pass",
    ),
    pytest.param(
        {
            "result": CheckResult(
                SpfResult.FAIL,
                "example.com",
                mechanism="-all",
                explanation="See https://example.com/spf.html",
            )
        },
        "fail (mybox.example.org: domain of myname@example.com does not\n"
        "\tdesignate 192.0.2.1 as permitted sender, explanation: See\n"
        "\thttps://example.com/spf.html) receiver=mybox.example.org;\n"
        '\tclient-ip=192.0.2.1; envelope-from="myname@example.com";\n'
        "\thelo=foo.example.com; mechanism=-all; identity=mailfrom",
        id="fail-with-explanation",
    ),
    pytest.param(
        {"result": CheckResult(SpfResult.SOFTFAIL, "example.com", mechanism="~all")},
        "softfail (mybox.example.org: domain of transitioning\n"
        "\tmyname@example.com does not designate 192.0.2.1 as permitted sender)\n"
        "\treceiver=mybox.example.org; client-ip=192.0.2.1;\n"
        '\tenvelope-from="myname@example.com"; helo=foo.example.com;'
        " mechanism=~all;\n"
        "\tidentity=mailfrom",
        id="softfail",
    ),
    pytest.param(
        {"result": CheckResult(SpfResult.NEUTRAL, "example.com", mechanism="?all")},
        "neutral (mybox.example.org: 192.0.2.1 is neither permitted nor\n"
        "\tdenied by domain of myname@example.com) receiver=mybox.example.org;\n"
        '\tclient-ip=192.0.2.1; envelope-from="myname@example.com";\n'
        "\thelo=foo.example.com; mechanism=?all; identity=mailfrom",
        id="neutral",
    ),
    pytest.param(
        {"result": CheckResult(SpfResult.NONE, "example.com")},
        "none (mybox.example.org: domain of myname@example.com does not\n"
        "\tdesignate permitted sender hosts) receiver=mybox.example.org;\n"
        '\tclient-ip=192.0.2.1; envelope-from="myname@example.com";\n'
        "\thelo=foo.example.com; identity=mailfrom",
        id="none-has-no-mechanism",
    ),
    pytest.param(
        {
            "result": CheckResult(
                SpfResult.PERMERROR, "example.com", problem="more than 10 DNS lookups"
            )
        },
        "permerror (mybox.example.org: permanent error in SPF record of\n"
        "\tdomain of myname@example.com) receiver=mybox.example.org;\n"
        '\tclient-ip=192.0.2.1; envelope-from="myname@example.com";\n'
        '\thelo=foo.example.com; problem="more than 10 DNS lookups";'
        " identity=mailfrom",
        id="permerror-with-problem",
    ),
    pytest.param(
        {"result": CheckResult(SpfResult.TEMPERROR, "example.com", problem="timeout")},
        "temperror (mybox.example.org: temporary error while checking\n"
        "\tdomain of myname@example.com) receiver=mybox.example.org;\n"
        '\tclient-ip=192.0.2.1; envelope-from="myname@example.com";\n'
        "\thelo=foo.example.com; problem=timeout; identity=mailfrom",
        id="temperror",
    ),
    pytest.param(
        {
            "result": CheckResult(SpfResult.PASS, HELO, mechanism="a"),
            "envelope_from": "",
        },
        "pass (mybox.example.org: domain of postmaster@foo.example.com\n"
        "\tdesignates 192.0.2.1 as permitted sender) receiver=mybox.example.org;\n"
        '\tclient-ip=192.0.2.1; envelope-from=""; helo=foo.example.com;'
        " mechanism=a;\n\tidentity=mailfrom",
        id="null-sender-speaks-of-postmaster-at-helo",
    ),
    pytest.param(
        {
            "result": CheckResult(SpfResult.PASS, HELO, mechanism="a"),
            "identity": Identity.HELO,
        },
        "pass (mybox.example.org: domain of foo.example.com designates\n"
        "\t192.0.2.1 as permitted sender) receiver=mybox.example.org;\n"
        '\tclient-ip=192.0.2.1; envelope-from="myname@example.com";\n'
        "\thelo=foo.example.com; mechanism=a; identity=helo",
        id="helo-identity",
    ),
    pytest.param(
        {
            "result": CheckResult(
                SpfResult.PASS, "example.com", mechanism="ip6:2001:db8::/32"
            ),
            "client_ip": IP6,
        },
        "pass (mybox.example.org: domain of myname@example.com designates\n"
        "\t2001:db8::25 as permitted sender) receiver=mybox.example.org;\n"
        '\tclient-ip="2001:db8::25"; envelope-from="myname@example.com";\n'
        '\thelo=foo.example.com; mechanism="ip6:2001:db8::/32"; identity=mailfrom',
        id="ipv6-client-ip-is-quoted",
    ),
    pytest.param(
        {
            "result": CheckResult(SpfResult.PASS, "example.com", mechanism="mx"),
            "receiver": None,
        },
        "pass (domain of myname@example.com designates 192.0.2.1 as\n"
        '\tpermitted sender) client-ip=192.0.2.1; envelope-from="myname@example.com";\n'
        "\thelo=foo.example.com; mechanism=mx; identity=mailfrom",
        id="receiver-hidden",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), RECEIVED_SPF_CASES)
def test_received_spf_renders_exactly(overrides: dict[str, Any], expected: str) -> None:
    assert _received_spf(**overrides) == expected


@pytest.mark.parametrize(("overrides", "expected"), RECEIVED_SPF_CASES)
def test_received_spf_without_fold_is_the_same_on_one_line(
    overrides: dict[str, Any], expected: str
) -> None:
    assert _received_spf(**overrides, fold=False) == expected.replace("\n\t", " ")


@pytest.mark.parametrize(("overrides", "expected"), RECEIVED_SPF_CASES)
def test_received_spf_normal_values_fold_within_78_characters(
    overrides: dict[str, Any], expected: str
) -> None:
    lines = ("Received-SPF: " + _received_spf(**overrides)).split("\n")
    assert all(len(line) <= 78 for line in lines)
    _assert_one_safe_field("Received-SPF", expected)


def test_received_spf_keys_parse_back_in_order() -> None:
    result = CheckResult(SpfResult.PERMERROR, "example.com", problem="bad; (x)")
    parsed = parse_received_spf(_received_spf(result=result))
    assert parsed.result == "permerror"
    assert parsed.pairs == {
        "receiver": RECEIVER,
        "client-ip": "192.0.2.1",
        "envelope-from": SENDER,
        "helo": HELO,
        "problem": "bad; (x)",
        "identity": "mailfrom",
    }


@pytest.mark.parametrize(
    ("field", "hostile", "rendered"),
    [
        pytest.param(
            "envelope_from",
            'a"b\\c@x',
            'envelope-from="a\\"b\\\\c@x"',
            id="quote-and-backslash-escaped",
        ),
        pytest.param(
            "envelope_from",
            "a\r\nX-Evil: 1@x",
            'envelope-from="a??X-Evil: 1@x"',
            id="crlf-replaced",
        ),
        pytest.param(
            "envelope_from",
            "a; identity=helo@x",
            'envelope-from="a; identity=helo@x"',
            id="semicolon-stays-quoted",
        ),
        pytest.param("helo", "bad\x00helo", "helo=bad?helo", id="nul-replaced"),
        pytest.param(
            "helo",
            "h\udcc3\udca9.example",
            "helo=h??.example",
            id="undecodable-bytes-replaced",
        ),
        pytest.param(
            "helo", "bücher.example", "helo=b?cher.example", id="utf8-replaced"
        ),
        pytest.param(
            "helo", "[192.0.2.1]", 'helo="[192.0.2.1]"', id="address-literal-quoted"
        ),
        pytest.param("helo", "", 'helo=""', id="empty-helo-quoted"),
    ],
)
def test_received_spf_quotes_or_replaces_hostile_text(
    field: str, hostile: str, rendered: str
) -> None:
    result = CheckResult(SpfResult.PASS, "example.com", mechanism="mx")
    value = _received_spf(result=result, fold=False, **{field: hostile})
    assert f" {rendered};" in value
    _assert_one_safe_field("Received-SPF", value)


def test_received_spf_comment_neutralises_parentheses_and_backslashes() -> None:
    result = CheckResult(
        SpfResult.FAIL, "example.com", mechanism="-all", explanation="see (\\) here"
    )
    value = _received_spf(result=result, envelope_from="a)b(c\\d@x", fold=False)
    assert value.startswith(
        "fail (mybox.example.org: domain of a]b[c?d@x does not designate"
        " 192.0.2.1 as permitted sender, explanation: see [?] here)"
    )


def test_received_spf_truncates_a_10_kb_helo_with_a_visible_marker() -> None:
    result = CheckResult(SpfResult.PASS, HELO, mechanism="a")
    for fold in (True, False):
        value = _received_spf(
            result=result, identity=Identity.HELO, helo="h" * 10_000, fold=fold
        )
        _assert_one_safe_field("Received-SPF", value)
        helo = parse_received_spf(value).pairs["helo"]
        assert (
            helo == "h" * (MAX_TEXT_CHARS - len(TRUNCATION_MARKER)) + TRUNCATION_MARKER
        )


# --- Authentication-Results: exact values (RFC 8601) ------------------------

PASS_MX = CheckResult(SpfResult.PASS, "example.com", mechanism="mx")
PASS_A = CheckResult(SpfResult.PASS, HELO, mechanism="a")

AUTH_RESULTS_CASES = [
    pytest.param(
        {"mailfrom": PASS_MX, "helo": PASS_A},
        "mybox.example.org;\n"
        "\tspf=pass smtp.mailfrom=myname@example.com;"
        " spf=pass smtp.helo=foo.example.com",
        [
            ("spf", "pass", None, [("smtp.mailfrom", SENDER)]),
            ("spf", "pass", None, [("smtp.helo", HELO)]),
        ],
        id="pass-both-identities",
    ),
    pytest.param(
        {
            "mailfrom": CheckResult(SpfResult.FAIL, "example.com", explanation="x"),
            "helo": CheckResult(SpfResult.NONE, HELO),
        },
        "mybox.example.org;\n"
        "\tspf=fail smtp.mailfrom=myname@example.com;"
        " spf=none smtp.helo=foo.example.com",
        [
            ("spf", "fail", None, [("smtp.mailfrom", SENDER)]),
            ("spf", "none", None, [("smtp.helo", HELO)]),
        ],
        id="fail-leaves-explanation-out",
    ),
    pytest.param(
        {
            "mailfrom": CheckResult(SpfResult.SOFTFAIL, "example.com"),
            "helo": CheckResult(SpfResult.NEUTRAL, HELO),
        },
        "mybox.example.org;\n"
        "\tspf=softfail smtp.mailfrom=myname@example.com;\n"
        "\tspf=neutral smtp.helo=foo.example.com",
        [
            ("spf", "softfail", None, [("smtp.mailfrom", SENDER)]),
            ("spf", "neutral", None, [("smtp.helo", HELO)]),
        ],
        id="softfail-and-neutral",
    ),
    pytest.param(
        {
            "mailfrom": CheckResult(
                SpfResult.PERMERROR, "example.com", problem="more than 10 DNS lookups"
            ),
            "helo": None,
        },
        "mybox.example.org;\n"
        '\tspf=permerror reason="more than 10 DNS lookups"\n'
        "\tsmtp.mailfrom=myname@example.com",
        [("spf", "permerror", "more than 10 DNS lookups", [("smtp.mailfrom", SENDER)])],
        id="permerror-reason-helo-not-checked",
    ),
    pytest.param(
        {
            "mailfrom": CheckResult(
                SpfResult.TEMPERROR, "example.com", problem="timeout"
            ),
            "helo": PASS_A,
        },
        "mybox.example.org;\n"
        "\tspf=temperror reason=timeout smtp.mailfrom=myname@example.com;\n"
        "\tspf=pass smtp.helo=foo.example.com",
        [
            ("spf", "temperror", "timeout", [("smtp.mailfrom", SENDER)]),
            ("spf", "pass", None, [("smtp.helo", HELO)]),
        ],
        id="temperror-reason-token",
    ),
    pytest.param(
        {
            "mailfrom": CheckResult(SpfResult.PERMERROR, "example.com", problem=""),
            "helo": None,
        },
        "mybox.example.org;\n\tspf=permerror smtp.mailfrom=myname@example.com",
        [("spf", "permerror", None, [("smtp.mailfrom", SENDER)])],
        id="empty-problem-gives-no-reason",
    ),
    pytest.param(
        {
            "mailfrom": PASS_A,
            "helo": PASS_A,
            "mailfrom_address": "postmaster@foo.example.com",
        },
        "mybox.example.org;\n"
        "\tspf=pass smtp.mailfrom=postmaster@foo.example.com;\n"
        "\tspf=pass smtp.helo=foo.example.com",
        [
            ("spf", "pass", None, [("smtp.mailfrom", "postmaster@foo.example.com")]),
            ("spf", "pass", None, [("smtp.helo", HELO)]),
        ],
        id="null-sender-as-postmaster-at-helo",
    ),
    pytest.param(
        {"mailfrom": None, "helo": PASS_A},
        "mybox.example.org; spf=pass smtp.helo=foo.example.com",
        [("spf", "pass", None, [("smtp.helo", HELO)])],
        id="helo-only",
    ),
    pytest.param(
        {"mailfrom": None, "helo": None},
        "mybox.example.org; none",
        [],
        id="nothing-checked-is-no-result",
    ),
    pytest.param(
        {
            "mailfrom": PASS_MX,
            "helo": PASS_A,
            "mailfrom_address": '"john doe"@example.com',
            "helo_name": "[192.0.2.1]",
        },
        "mybox.example.org;\n"
        '\tspf=pass smtp.mailfrom="\\"john doe\\"@example.com";\n'
        '\tspf=pass smtp.helo="[192.0.2.1]"',
        [
            ("spf", "pass", None, [("smtp.mailfrom", '"john doe"@example.com')]),
            ("spf", "pass", None, [("smtp.helo", "[192.0.2.1]")]),
        ],
        id="quoted-local-part-and-literal-are-quoted-strings",
    ),
]


@pytest.mark.parametrize(("overrides", "expected", "clauses"), AUTH_RESULTS_CASES)
def test_authentication_results_renders_exactly(
    overrides: dict[str, Any], expected: str, clauses: list[Any]
) -> None:
    assert _auth_results(**overrides) == expected
    assert _auth_results(**overrides, fold=False) == expected.replace("\n\t", " ")


@pytest.mark.parametrize(("overrides", "expected", "parsed"), AUTH_RESULTS_CASES)
def test_authentication_results_parse_with_authres(
    overrides: dict[str, Any], expected: str, parsed: list[Any]
) -> None:
    for fold in (True, False):
        header = parse_auth_results(_auth_results(**overrides, fold=fold))
        assert header.authserv_id == RECEIVER
        assert clauses(header) == parsed


def test_authres_cannot_read_a_quoted_authserv_id_but_we_can() -> None:
    value = _auth_results(authserv_id="my server", mailfrom=None, helo=None)
    assert value == '"my server"; none'
    with pytest.raises(authres.SyntaxError):
        authres.AuthenticationResultsHeader.parse("Authentication-Results: " + value)
    assert extract_authserv_id(value) == "my server"


# --- extract_authserv_id / is_our_authserv_id / is_valid_authserv_id --------


@pytest.mark.parametrize(
    ("field_value", "expected"),
    [
        pytest.param(
            "mx.example.org; spf=pass smtp.mailfrom=a@b", "mx.example.org", id="plain"
        ),
        pytest.param(
            " mx.example.org;spf=pass",
            "mx.example.org",
            id="leading-space-no-space-after",
        ),
        pytest.param('"mx example"; none', "mx example", id="quoted"),
        pytest.param('"mx\\"x\\\\y"; none', 'mx"x\\y', id="quoted-with-quoted-pairs"),
        pytest.param("mx.example.org 1; spf=pass", "mx.example.org", id="with-version"),
        pytest.param(
            "mx.example.org (v) 1 (c); none",
            "mx.example.org",
            id="version-and-comments",
        ),
        pytest.param(
            "(forged (nested) \\) x) mx.example.org; none",
            "mx.example.org",
            id="leading-comment",
        ),
        pytest.param(
            "\r\n\tmx.example.org\r\n\t; spf=pass", "mx.example.org", id="folded-crlf"
        ),
        pytest.param(
            "\n mx.example.org;\n\tspf=pass", "mx.example.org", id="folded-lf"
        ),
        pytest.param(
            '"mx.\r\n\texample"; none', "mx.\texample", id="folded-inside-quotes"
        ),
        pytest.param("MX.Example.ORG; none", "MX.Example.ORG", id="upper-case-kept"),
        pytest.param("mx.example.org", "mx.example.org", id="id-alone"),
        pytest.param("", None, id="empty"),
        pytest.param("   \r\n\t ", None, id="only-whitespace"),
        pytest.param("(unclosed mx.example.org; none", None, id="unclosed-comment"),
        pytest.param('"unclosed; none', None, id="unclosed-quote"),
        pytest.param('"trailing backslash\\', None, id="trailing-backslash"),
        pytest.param('""; none', None, id="empty-quoted"),
        pytest.param("; spf=pass", None, id="no-id"),
        pytest.param("mx.example.org@evil; none", None, id="junk-after-id"),
        pytest.param("mx.example.org\x00; none", None, id="nul-after-id"),
        pytest.param(")mx.example.org; none", None, id="stray-close-paren"),
        pytest.param("\udcff\udc80; none", None, id="undecodable-bytes"),
        pytest.param("(" * 5000 + "x", None, id="deep-nesting"),
    ],
)
def test_extract_authserv_id(field_value: str, expected: str | None) -> None:
    assert extract_authserv_id(field_value) == expected


@pytest.mark.parametrize(
    ("field_value", "ours"),
    [
        pytest.param("mx.example.org; spf=pass", True, id="same"),
        pytest.param("MX.EXAMPLE.ORG; spf=pass", True, id="case-insensitive"),
        pytest.param('"mx.example.org" 1; spf=pass', True, id="quoted-with-version"),
        pytest.param(
            "(x)\r\n mx.example.org;\r\n\tspf=pass", True, id="comment-and-folds"
        ),
        pytest.param("mx.example.org.evil; spf=pass", False, id="longer-id"),
        pytest.param("example.org; spf=pass", False, id="parent-domain"),
        pytest.param("garbage(", False, id="garbage"),
    ],
)
def test_is_our_authserv_id(field_value: str, ours: bool) -> None:
    assert is_our_authserv_id(field_value, "mx.example.org") is ours


def test_empty_authserv_id_never_matches() -> None:
    assert not is_our_authserv_id('""; none', "")


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        pytest.param("mx.example.org", True, id="host-name"),
        pytest.param("my server", True, id="quotable"),
        pytest.param('a"b\\c;d', True, id="quotable-specials"),
        pytest.param("", False, id="empty"),
        pytest.param(" mx", False, id="leading-space"),
        pytest.param("mx ", False, id="trailing-space"),
        pytest.param("mx\r\nX: y", False, id="crlf"),
        pytest.param("mx\tx", False, id="tab"),
        pytest.param("bücher.example", False, id="non-ascii"),
        pytest.param("x" * (MAX_TEXT_CHARS + 1), False, id="too-long"),
    ],
)
def test_is_valid_authserv_id(text: str, valid: bool) -> None:
    assert is_valid_authserv_id(text) is valid


# --- Properties over hostile input --------------------------------------------

_NASTY = '\r\n\x00\t\x7f\x85;()"\\=@<>[]:, .\udc80\udcff\ud800é€😀ab-'
_HOSTILE = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=30),
    st.text(st.sampled_from(_NASTY), max_size=60),
    st.builds(
        lambda chunk, times: chunk * times,
        st.text(st.sampled_from(_NASTY), min_size=1, max_size=5),
        st.integers(min_value=2_000, max_value=2_500),
    ),
)
_RESULTS = st.builds(
    CheckResult,
    result=st.sampled_from(SpfResult),
    domain=st.just("example.com"),
    mechanism=st.none() | _HOSTILE,
    explanation=st.none() | _HOSTILE,
    problem=st.none() | _HOSTILE,
)
_HOST_NAMES = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True
)


def _expected_received_spf_pairs(
    result: CheckResult,
    identity: Identity,
    client_ip: IPv4Address | IPv6Address,
    envelope_from: str,
    helo: str,
    receiver: str | None,
) -> dict[str, str]:
    pairs = {} if receiver is None else {"receiver": _expected_clean(receiver)}
    pairs |= {
        "client-ip": str(client_ip),
        "envelope-from": _expected_clean(envelope_from),
        "helo": _expected_clean(helo),
    }
    if result.result in (SpfResult.PERMERROR, SpfResult.TEMPERROR):
        if result.problem:
            pairs["problem"] = _expected_clean(result.problem)
    elif result.mechanism:
        pairs["mechanism"] = _expected_clean(result.mechanism)
    pairs["identity"] = str(identity)
    return pairs


@settings(max_examples=300)
@given(
    result=_RESULTS,
    identity=st.sampled_from(Identity),
    client_ip=st.ip_addresses(),
    envelope_from=_HOSTILE,
    helo=_HOSTILE,
    receiver=st.none() | _HOSTILE,
    fold=st.booleans(),
)
def test_received_spf_is_one_safe_field_with_exactly_the_expected_keys(
    result: CheckResult,
    identity: Identity,
    client_ip: IPv4Address | IPv6Address,
    envelope_from: str,
    helo: str,
    receiver: str | None,
    fold: bool,
) -> None:
    value = render_received_spf(
        result=result,
        identity=identity,
        client_ip=client_ip,
        envelope_from=envelope_from,
        helo=helo,
        receiver=receiver,
        fold=fold,
    )
    _assert_one_safe_field("Received-SPF", value)
    parsed = parse_received_spf(value)
    assert parsed.result == str(result.result)
    expected = _expected_received_spf_pairs(
        result, identity, client_ip, envelope_from, helo, receiver
    )
    assert list(parsed.pairs.items()) == list(expected.items())


@settings(max_examples=300)
@given(
    authserv_id=_HOST_NAMES,
    mailfrom=st.none() | _RESULTS,
    mailfrom_address=_HOSTILE,
    helo=st.none() | _RESULTS,
    helo_name=_HOSTILE,
    fold=st.booleans(),
)
def test_authentication_results_has_one_spf_clause_per_checked_identity(
    authserv_id: str,
    mailfrom: CheckResult | None,
    mailfrom_address: str,
    helo: CheckResult | None,
    helo_name: str,
    fold: bool,
) -> None:
    value = render_authentication_results(
        authserv_id=authserv_id,
        mailfrom=mailfrom,
        mailfrom_address=mailfrom_address,
        helo=helo,
        helo_name=helo_name,
        fold=fold,
    )
    _assert_one_safe_field("Authentication-Results", value)
    expected = [
        (
            "spf",
            str(checked.result),
            _expected_ar_text(checked.problem, keep_equals=False)
            if checked.result in (SpfResult.PERMERROR, SpfResult.TEMPERROR)
            and checked.problem
            else None,
            [(f"smtp.{prop}", _expected_ar_text(text, keep_equals=prop == "mailfrom"))],
        )
        for checked, prop, text in (
            (mailfrom, "mailfrom", mailfrom_address),
            (helo, "helo", helo_name),
        )
        if checked is not None
    ]
    header = parse_auth_results(value)
    assert header.authserv_id == authserv_id.lower()
    assert clauses(header) == expected
    assert extract_authserv_id(value) == authserv_id


@given(
    authserv_id=st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1
    )
)
def test_any_valid_authserv_id_is_recognised_in_our_own_field(authserv_id: str) -> None:
    assume(is_valid_authserv_id(authserv_id))
    value = render_authentication_results(
        authserv_id=authserv_id,
        mailfrom=PASS_MX,
        mailfrom_address=SENDER,
        helo=None,
        helo_name=HELO,
    )
    _assert_one_safe_field("Authentication-Results", value)
    assert extract_authserv_id(value) == authserv_id
    assert is_our_authserv_id(value, authserv_id.upper())


@given(field_value=_HOSTILE)
def test_extract_authserv_id_never_raises(field_value: str) -> None:
    found = extract_authserv_id(field_value)
    assert found is None or found


# --- What naive readers take from our fields (module docstring) --------------
# SpamAssassin 4.0.1's SPF plugin (Mail::SpamAssassin::Plugin::SPF) reads
# the unfolded fields with these expressions; tests/integration/
# test_downstream.py runs the real thing.

_SA_AUTH_RESULTS = re.compile(r"^Authentication-Results:.*;\s*SPF\s*=\s*([^;]*)", re.I)
_SA_AR_CLAUSE = re.compile(
    r"^(pass|neutral|(?:hard|soft)?fail|(?:temp|perm)error|none)"
    r"(?:[^;]*?\bsmtp\.(\S+)\s*=[^;]+)?",
    re.I,
)
_SA_RECEIVED_SPF = re.compile(
    r"^received-spf:\s*(pass|neutral|(?:soft)?fail|(?:temp|perm)error|none)\b"
    r"(?:.*\bidentity=(\S+?);?\b)?",
    re.I,
)


def _naive_auth_results(value: str) -> tuple[str, str | None]:
    """Return (result, identity) as SpamAssassin reads an A-R field."""
    found = _SA_AUTH_RESULTS.match("Authentication-Results: " + unfold(value))
    assert found is not None
    clause = _SA_AR_CLAUSE.match(found[1])
    assert clause is not None
    return clause[1], clause[2]


@settings(max_examples=300)
@given(result=_RESULTS, helo_name=_HOSTILE, mailfrom_address=_HOSTILE)
def test_a_naive_reader_takes_the_last_clause_as_ours(
    result: CheckResult, helo_name: str, mailfrom_address: str
) -> None:
    value = render_authentication_results(
        authserv_id=RECEIVER,
        mailfrom=PASS_MX,
        mailfrom_address=mailfrom_address,
        helo=result,
        helo_name=helo_name,
    )
    assert _naive_auth_results(value) == (str(result.result), "helo")


@pytest.mark.parametrize(
    ("helo_name", "problem"),
    [
        ("x;spf=pass", ""),
        ("x; spf=pass smtp.mailfrom=a@b", ""),
        ("a=b", ""),
        ("h.example", "unknown mechanism 'foo;spf=pass'"),
        ("h.example", "bad term smtp.mailfrom=x"),
    ],
    ids=["helo-semicolon", "helo-clause", "helo-equals", "record-semicolon", "smtp"],
)
def test_hostile_helo_or_record_text_cannot_change_what_a_naive_reader_sees(
    helo_name: str, problem: str
) -> None:
    helo = CheckResult(SpfResult.PERMERROR, "h.example", problem=problem or "bad")
    value = render_authentication_results(
        authserv_id=RECEIVER,
        mailfrom=CheckResult(SpfResult.FAIL, "example.com", mechanism="-all"),
        mailfrom_address=SENDER,
        helo=helo,
        helo_name=helo_name,
    )
    assert _naive_auth_results(value) == ("permerror", "helo")


@settings(max_examples=300)
@given(
    result=_RESULTS,
    identity=st.sampled_from(Identity),
    envelope_from=_HOSTILE,
    helo=_HOSTILE,
    fold=st.booleans(),
)
def test_a_naive_reader_takes_our_identity_from_received_spf(
    result: CheckResult, identity: Identity, envelope_from: str, helo: str, fold: bool
) -> None:
    value = render_received_spf(
        result=result,
        identity=identity,
        client_ip=IP4,
        envelope_from=envelope_from,
        helo=helo,
        receiver=RECEIVER,
        fold=fold,
    )
    found = _SA_RECEIVED_SPF.match("Received-SPF: " + unfold(value))
    assert found is not None
    assert (found[1], found[2]) == (str(result.result), str(identity))


@pytest.mark.parametrize(
    "overrides",
    [
        {"result": CheckResult(SpfResult.PERMERROR, "x", problem="a:identity=helo")},
        {"result": CheckResult(SpfResult.PASS, "x", mechanism="a:identity=helo")},
        {"result": PASS_MX, "helo": "identity=helo"},
    ],
    ids=["problem", "mechanism", "helo"],
)
def test_record_or_helo_text_cannot_name_the_identity_of_received_spf(
    overrides: dict[str, Any],
) -> None:
    value = _received_spf(**overrides, fold=False)
    found = _SA_RECEIVED_SPF.match("Received-SPF: " + value)
    assert found is not None
    assert found[2] == "mailfrom"
