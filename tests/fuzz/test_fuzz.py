"""Property-based fuzzing of everything that reads hostile input.

The SMTP client chooses the HELO, the MAIL FROM, the recipients and the
header fields; a domain owner chooses the records and the explanation. For
any of them: no exception escapes, every result is one of the seven tokens,
every header field added is one well-formed field, every SMTP reply one line
of printable ASCII.

CI runs a small derandomised slice; ``scripts/fuzz`` runs the long one
(``SPF_FUZZ_EXAMPLES`` examples per property, random seeds).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.dnszone import Zone
from helpers.fakelookup import FakeLookup
from helpers.harness import MilterHarness
from spf_milter.headers import MAX_LINE_OCTETS
from spf_milter.outcome import ERROR_REPLY
from spf_milter.spf import Limits, SpfResult, check_host
from spf_milter.spf.errors import PermError
from spf_milter.spf.macro import expand, parse_macro_string
from spf_milter.spf.names import client_macros
from spf_milter.spf.record import parse_record

EXAMPLES = int(os.environ.get("SPF_FUZZ_EXAMPLES", "150"))
LONG_RUN = "SPF_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=not LONG_RUN,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Text as pymilter hands it over: UTF-8 decoded with surrogateescape, so any
# byte string becomes a str (lone surrogates stand for undecodable bytes).
raw_bytes = st.binary(max_size=300)
smtp_text = st.one_of(
    raw_bytes.map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(max_size=200),
    st.sampled_from(
        [
            "",
            "a\r\nX-Injected: yes",
            '"quoted local@part"@example.net',
            "user@[192.0.2.1]",
            "user@[IPv6:2001:db8::1]",
            "üser@bücher.example",
            "x" * 10_000,
            "<>",
            "a;b (c) \\d",
            "%{s}%%%-%_",
        ]
    ),
)
SPF_WORDS = [
    "v=spf1",
    "ip4:192.0.2.0/24",
    "ip6:2001:db8::/32",
    "a",
    "mx",
    "ptr",
    "all",
    "-all",
    "~all",
    "?all",
    "+a/24//64",
    "include:sub.example.org",
    "exists:%{ir}.%{l1r-}.x.example.org",
    "redirect=sub.example.org",
    "exp=exp.example.org",
    "%{d}",
    "%{i}",
    "%{p}",
    "%{h}",
    "%{c}",
    "%",
    "=",
    ":",
    "/",
    "//",
    "a:",
    "mx:%{o}",
    "unknown=%{x}",
    "\x00",
    "\xff",
    " ",
    "  ",
]
spf_text = st.one_of(
    st.lists(st.sampled_from(SPF_WORDS), max_size=15).map(" ".join),
    st.text(max_size=200),
).map(lambda text: text.encode("utf-8", "surrogateescape"))
# Hostile sizes: one building block repeated up to the size of a TCP answer
# (64 kB): deep backtracking, numbers too long for int(), expansions that
# multiply, labels by the thousand.
HOSTILE_BLOCKS = [
    "a",
    "a.",
    "1",
    "-a",
    "%{d}",
    "%{d}.",
    "%{s}",
    "%{l1r-}",
    "%{d9999999999999}",
    "%%",
    "%_",
    ".",
    "/1",
    "//1",
    "1:",
]
HOSTILE_PREFIXES = [
    "include:.",
    "a:",
    "a/",
    "a//",
    "mx:",
    "exists:",
    "ip4:192.0.2.0/",
    "ip6:",
    "ip6:2001:db8::/",
    "redirect=",
    "exp=",
    "x=",
    "ptr:",
    "exists:%{d",
]
hostile_term = st.builds(
    lambda prefix, block, count, end: prefix + block * count + end,
    st.sampled_from(HOSTILE_PREFIXES),
    st.sampled_from(HOSTILE_BLOCKS),
    st.integers(1, 64_000 // 4),
    st.sampled_from(["", "!", "}", ".x", "}.x", "-", "1"]),
).map(lambda text: text[:64_000].encode())
addresses = st.one_of(
    st.ip_addresses(v=4),
    st.ip_addresses(v=6),
    st.ip_addresses(v=4).map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}")),
)


@FUZZ
@given(text=spf_text)
def test_record_parser_accepts_or_gives_permerror(text: bytes) -> None:
    with contextlib.suppress(PermError):
        parse_record(b"v=spf1 " + text)


@FUZZ
@given(
    text=smtp_text,
    sender=smtp_text,
    helo=smtp_text,
    ip=addresses,
    explain=st.booleans(),
)
def test_macros_parse_or_fail_and_always_expand(
    text: str,
    sender: str,
    helo: str,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    explain: bool,
) -> None:
    try:
        macros = parse_macro_string(text, explain=explain)
    except PermError:
        return
    assert isinstance(
        expand(macros, client_macros(ip, sender, helo, "mx.example")), str
    )


@FUZZ
@given(term=hostile_term)
def test_hostile_sizes_parse_or_give_a_short_permerror(term: bytes) -> None:
    problem = ""
    try:
        parse_record(b"v=spf1 " + term + b" -all")
    except PermError as error:
        problem = error.problem
    assert len(problem) < 300


@FUZZ
@given(term=hostile_term, ip=addresses, sender=smtp_text)
def test_hostile_sizes_end_in_a_result_with_short_texts(
    term: bytes, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, sender: str
) -> None:
    zone = _zone([b"v=spf1 " + term + b" -all"], b"%{s} " * 10_000)
    checked = asyncio.run(
        check_host(
            FakeLookup(zone), ip, "example.org", sender, limits=Limits(time_limit=5)
        )
    )
    assert checked.result in set(SpfResult)
    assert len(checked.problem or "") < 300
    assert len(checked.explanation or "") <= 256


def _zone(records: list[bytes], exp: bytes) -> Zone:
    zone = Zone()
    for text in records:
        zone.add_txt("example.org", text)
    zone.add_txt("sub.example.org", b"v=spf1 a -all")
    zone.add_txt("exp.example.org", exp)
    zone.add_a("example.org", "192.0.2.1")
    zone.add_mx("example.org", 10, "mx.example.org")
    zone.add_aaaa("mx.example.org", "2001:db8::1")
    return zone


@FUZZ
@given(
    records=st.lists(spf_text.map(lambda t: b"v=spf1 " + t), min_size=0, max_size=2),
    exp=spf_text,
    ip=addresses,
    sender=smtp_text,
    helo=smtp_text,
)
def test_check_host_always_ends_in_one_of_the_seven_results(
    records: list[bytes],
    exp: bytes,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    sender: str,
    helo: str,
) -> None:
    lookup = FakeLookup(_zone(records, exp))
    checked = asyncio.run(
        check_host(
            lookup, ip, "example.org", sender, helo=helo, limits=Limits(time_limit=5)
        )
    )
    assert checked.result in set(SpfResult)
    if checked.explanation is not None:
        assert len(checked.explanation) <= 256
        assert all(" " <= char <= "~" for char in checked.explanation)
    for text in (checked.problem or "", checked.mechanism or ""):
        assert "\r" not in text
        assert "\n" not in text


# -- the callback class with generated envelopes ------------------------------

CONFIG = "socket: inet:8894@127.0.0.1\nauthserv_id: mx.test.example\nuser: root\n"
ZONE = """\
$TTL 300
$ORIGIN example.net.
@     TXT "v=spf1 ip4:192.0.2.0/24 -all exp=why.example.net"
why   TXT "%{l} from %{i} via %{h} is not welcome: %{s}"
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilterHarness]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    (directory / "spf-milter.yaml").write_text(CONFIG)
    (directory / "policy.yaml").write_text("")
    harness = MilterHarness(directory / "spf-milter.yaml", Zone.from_text(ZONE))
    yield harness
    harness.close()


def _assert_one_field(value: str) -> None:
    for line in value.split("\n"):
        assert len(line.encode("utf-8", "surrogateescape")) <= MAX_LINE_OCTETS
    assert "\r" not in value
    assert all(part.startswith("\t") for part in value.split("\n")[1:])
    assert all(" " <= c <= "~" or c in "\n\t" for c in value)


@FUZZ
@given(
    helo=smtp_text,
    mail_from=smtp_text,
    local=smtp_text,
    header=smtp_text,
    ip=addresses,
    auth=st.sampled_from([None, "", "alice", "\udcff"]),
)
def test_any_envelope_gives_single_fields_and_one_line_replies(
    harness: MilterHarness,
    helo: str,
    mail_from: str,
    local: str,
    header: str,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    auth: str | None,
) -> None:
    macros = {"{auth_authen}": auth} if auth is not None else {}
    session = harness.session(
        client_ip=str(ip),
        helo=helo,
        mail_from=mail_from or f"{local}@example.net",
        recipients=[f"{local}@example.com", "b@example.org"],
        headers=[("Authentication-Results", header), ("Subject", header)],
        macros=macros,
    )
    for code, reply in session.rcpt_replies:
        assert code in (Milter.CONTINUE, Milter.REJECT, Milter.TEMPFAIL)
        if reply is not None:
            assert reply != (
                str(ERROR_REPLY.code),
                ERROR_REPLY.status,
                ERROR_REPLY.text,
            )
            text = " ".join(reply)
            assert "\n" not in text
            assert "\r" not in text
            assert all(" " <= c <= "~" for c in text)
    assert session.replies["eom"] == Milter.CONTINUE
    for _name, value, index in session.ctx.added:
        assert index == 0
        _assert_one_field(value)
