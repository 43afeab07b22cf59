"""check_host() against in-memory zones: mechanisms, limits, hostile data."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable

import pytest

from helpers.dnszone import Zone
from helpers.fakelookup import FakeLookup
from helpers.growth import LINEAR_BOUND, best_time, growth
from spf_milter.spf import CheckResult, Limits, SpfResult, Trace, check_host

CLIENT = "192.0.2.10"


def _check(
    zone: Zone,
    ip: str = CLIENT,
    domain: str = "example.org",
    *,
    sender: str | None = None,
    limits: Limits = Limits(),  # noqa: B008
    trace: Trace | None = None,
) -> CheckResult:
    return asyncio.run(
        check_host(
            FakeLookup(zone),
            ipaddress.ip_address(ip),
            domain,
            sender or f"user@{domain}",
            helo="mail.example.net",
            receiver="mx.example.com",
            limits=limits,
            trace=trace,
        )
    )


def _zone(records: dict[str, str] | None = None) -> Zone:
    """Build a zone of TXT records, name -> text."""
    zone = Zone()
    for name, text in (records or {}).items():
        zone.add_txt(name, text.encode())
    return zone


@pytest.mark.parametrize(
    ("record", "ip", "result", "mechanism"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.10", "pass", "ip4:192.0.2.0/24"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "198.51.100.1", "fail", "-all"),
        ("v=spf1 ip4:192.0.2.0/24 ~all", "198.51.100.1", "softfail", "~all"),
        ("v=spf1 ip4:192.0.2.0/24 ?all", "198.51.100.1", "neutral", "?all"),
        ("v=spf1 ip4:192.0.2.0/24", "198.51.100.1", "neutral", "default"),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db8::1", "pass", "ip6:2001:db8::/32"),
        ("v=spf1 ip4:0.0.0.0/0 -all", "2001:db8::1", "fail", "-all"),
        ("v=spf1 ip4:192.0.2.10 -all", "::ffff:192.0.2.10", "pass", "ip4:192.0.2.10"),
        ("v=spf1 -ip4:192.0.2.10 +all", "192.0.2.10", "fail", "-ip4:192.0.2.10"),
    ],
    ids=[
        "pass",
        "fail",
        "softfail",
        "neutral",
        "default",
        "ip6",
        "ip4-vs-v6-client",
        "ipv4-mapped-client",
        "qualifier",
    ],
)
def test_ip_mechanisms_and_qualifiers(
    record: str, ip: str, result: str, mechanism: str
) -> None:
    checked = _check(_zone({"example.org": record}), ip)
    assert (checked.result, checked.mechanism) == (SpfResult(result), mechanism)
    assert checked.lookups == 0


def test_no_record_and_malformed_domains_are_none() -> None:
    zone = _zone({"example.org": "not spf"})
    assert _check(zone).result is SpfResult.NONE
    for domain in [
        "[192.0.2.1]",
        "localhost",
        "a..example.org",
        "x" * 64 + ".example.org",
    ]:
        assert _check(zone, domain=domain).result is SpfResult.NONE, domain


def test_two_spf_records_are_permerror() -> None:
    zone = _zone({"example.org": "v=spf1 -all"})
    zone.add_txt("example.org", b"v=spf1 +all")
    checked = _check(zone)
    assert checked.result is SpfResult.PERMERROR
    assert checked.problem == "example.org: 2 SPF records, not one"


def test_multi_string_txt_is_joined_without_spaces() -> None:
    zone = Zone()
    zone.add_txt("example.org", b"v=spf1 ip4:192.0.2", b".10 -all")
    assert _check(zone).result is SpfResult.PASS


def test_a_and_mx_with_dual_cidr() -> None:
    zone = _zone({"example.org": "v=spf1 a/24 mx//64 -all"})
    zone.add_a("example.org", "192.0.2.200")
    zone.add_mx("example.org", 10, "mx.example.org")
    zone.add_aaaa("mx.example.org", "2001:db8::1")
    assert _check(zone, "192.0.2.10").mechanism == "a/24"
    assert _check(zone, "2001:db8::ffff").mechanism == "mx//64"
    assert _check(zone, "2001:db9::1").result is SpfResult.FAIL


def test_mx_checks_every_exchange_and_skips_a_null_mx() -> None:
    zone = _zone({"example.org": "v=spf1 mx -all"})
    zone.add_mx("example.org", 0, ".")
    for n in range(5):
        zone.add_mx("example.org", 10 + n, f"mx{n}.example.org")
        zone.add_a(f"mx{n}.example.org", f"198.51.100.{n}")
    assert _check(zone, "198.51.100.4").result is SpfResult.PASS
    assert _check(zone, "198.51.100.5").result is SpfResult.FAIL


def test_more_than_ten_mx_names_is_permerror() -> None:
    zone = _zone({"example.org": "v=spf1 mx -all"})
    for n in range(11):
        zone.add_mx("example.org", n, f"mx{n}.example.org")
    checked = _check(zone)
    assert checked.result is SpfResult.PERMERROR
    assert "11 MX records" in (checked.problem or "")


def test_mx_address_error_before_a_match_is_temperror() -> None:
    zone = _zone({"example.org": "v=spf1 mx -all"})
    zone.add_mx("example.org", 10, "broken.example.org")
    zone.add_mx("example.org", 20, "good.example.org")
    zone.set_servfail("broken.example.org")
    zone.add_a("good.example.org", CLIENT)
    assert _check(zone).result is SpfResult.TEMPERROR


def test_ptr_validates_names_and_ignores_names_past_the_tenth() -> None:
    zone = _zone({"example.org": "v=spf1 ptr -all"})
    reverse = ipaddress.ip_address(CLIENT).reverse_pointer
    for n in range(10):
        zone.add_ptr(reverse, f"other{n}.example.net")
    zone.add_ptr(reverse, "mail.example.org")  # the eleventh: ignored (§4.6.4)
    zone.add_a("mail.example.org", CLIENT)
    assert _check(zone).result is SpfResult.FAIL
    forged = _zone({"example.org": "v=spf1 ptr -all"})
    forged.add_ptr(reverse, "mail.example.org")  # PTR says so, A does not
    forged.add_a("mail.example.org", "198.51.100.1")
    assert _check(forged).result is SpfResult.FAIL
    good = _zone({"example.org": "v=spf1 ptr -all"})
    good.add_ptr(reverse, "Mail.Example.Org")
    good.add_a("mail.example.org", CLIENT)
    assert _check(good).result is SpfResult.PASS


def test_exists_always_asks_for_an_a_record() -> None:
    zone = _zone({"example.org": "v=spf1 exists:%{ir}.%{v}.allow.example.org -all"})
    zone.add_a(
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.allow.example.org",
        "127.0.0.2",
    )
    assert _check(zone, "2001:db8::1").result is SpfResult.PASS


def test_include_result_mapping() -> None:
    records = {
        "pass.example.org": "v=spf1 +all",
        "fail.example.org": "v=spf1 -all",
        "neutral.example.org": "v=spf1 ?all",
        "perm.example.org": "v=spf1 foo",
    }
    zone = Zone()
    for name, text in records.items():
        zone.add_txt(name, text.encode())
    zone.set_servfail("temp.example.org")
    for target, result in [
        ("pass", "fail"),  # -include matched
        ("fail", "pass"),  # no match, falls to +all
        ("neutral", "pass"),
        ("perm", "permerror"),
        ("temp", "temperror"),
        ("none", "permerror"),  # no record at the target
    ]:
        zone.add_txt(
            f"{target}.top.example",
            f"v=spf1 -include:{target}.example.org +all".encode(),
        )
        checked = _check(zone, domain=f"{target}.top.example")
        assert str(checked.result) == result, target


def test_redirect_uses_the_target_result_and_is_ignored_with_all() -> None:
    zone = _zone(
        {
            "example.org": "v=spf1 ip4:198.51.100.0/24 redirect=_spf.example.org",
            "_spf.example.org": "v=spf1 ip4:192.0.2.0/24 -all",
        }
    )
    assert _check(zone).mechanism == "ip4:192.0.2.0/24"
    assert _check(zone, "203.0.113.1").result is SpfResult.FAIL
    zone.add_txt("with-all.example.org", b"v=spf1 redirect=_spf.example.org ?all")
    assert _check(zone, domain="with-all.example.org").result is SpfResult.NEUTRAL


def test_redirect_to_a_domain_without_record_is_permerror() -> None:
    checked = _check(_zone({"example.org": "v=spf1 redirect=nothing.example.org"}))
    assert checked.result is SpfResult.PERMERROR


# -- limits and hostile data (§4.6.4) ---------------------------------------


def test_include_loop_stops_at_the_dns_term_limit() -> None:
    zone = _zone({"example.org": "v=spf1 include:example.org -all"})
    checked = _check(zone)
    assert checked.result is SpfResult.PERMERROR
    assert checked.lookups == 11
    assert "more than 10 DNS-querying terms" in (checked.problem or "")


def test_redirect_loop_stops_at_the_dns_term_limit() -> None:
    zone = _zone(
        {
            "a.example": "v=spf1 redirect=b.example",
            "b.example": "v=spf1 redirect=a.example",
        }
    )
    assert _check(zone, domain="a.example").result is SpfResult.PERMERROR


def test_ten_includes_pass_and_eleven_are_permerror() -> None:
    zone = Zone()
    for n in range(11):
        zone.add_txt(f"i{n}.example.org", b"v=spf1 -all")
    ten = " ".join(f"include:i{n}.example.org" for n in range(10))
    zone.add_txt("ten.example", f"v=spf1 {ten} +all".encode())
    zone.add_txt(
        "eleven.example", f"v=spf1 {ten} include:i10.example.org +all".encode()
    )
    assert _check(zone, domain="ten.example").result is SpfResult.PASS
    assert _check(zone, domain="eleven.example").result is SpfResult.PERMERROR


def test_third_void_lookup_is_permerror() -> None:
    two = _zone({"example.org": "v=spf1 a:v1.example.org a:v2.example.org +all"})
    assert _check(two).result is SpfResult.PASS
    record = "v=spf1 a:v1.example.org a:v2.example.org mx:v3.example.org +all"
    three = _zone({"example.org": record})
    checked = _check(three)
    assert checked.result is SpfResult.PERMERROR
    assert checked.void_lookups == 3


def test_cname_chains_are_followed_and_loops_are_temperror() -> None:
    zone = _zone({"target.example.org": "v=spf1 ip4:192.0.2.10 -all"})
    zone.add_cname("example.org", "hop1.example.org")
    zone.add_cname("hop1.example.org", "target.example.org")
    assert _check(zone).result is SpfResult.PASS
    loop = Zone()
    loop.add_cname("example.org", "other.example.org")
    loop.add_cname("other.example.org", "example.org")
    assert _check(loop).result is SpfResult.TEMPERROR


def test_ten_kilobyte_record_is_parsed() -> None:
    networks = " ".join(f"ip4:10.{n // 256}.{n % 256}.0/24" for n in range(450))
    zone = Zone()
    zone.add_txt("example.org", f"v=spf1 {networks} ip4:{CLIENT} -all".encode())
    assert _check(zone).result is SpfResult.PASS


def test_dns_that_never_answers_is_temperror_within_the_time_limit() -> None:
    zone = _zone()
    zone.set_delay("example.org", 30.0)
    zone.add_txt("example.org", b"v=spf1 -all")
    started = time.monotonic()
    checked = _check(zone, limits=Limits(time_limit=0.3))
    assert time.monotonic() - started < 5.0  # not the 30 s the DNS would take
    assert checked.result is SpfResult.TEMPERROR
    assert "time limit" in (checked.problem or "")


# -- explanation (§6.2) ------------------------------------------------------


def test_explanation_is_expanded_from_the_exp_record() -> None:
    zone = _zone(
        {
            "example.org": "v=spf1 -all exp=why.example.org",
            "why.example.org": "%{i} may not send for %{d} (receiver %{r})",
        }
    )
    assert (
        _check(zone).explanation
        == "192.0.2.10 may not send for example.org (receiver mx.example.com)"
    )


def test_broken_exp_falls_back_to_the_default() -> None:
    zone = _zone({"example.org": "v=spf1 -all exp=missing.example.org"})
    assert _check(zone).explanation == (
        "SPF: example.org does not designate 192.0.2.10 as a permitted sender"
    )


def test_control_characters_in_the_exp_record_give_the_default() -> None:
    zone = Zone()
    zone.add_txt("example.org", b"v=spf1 -all exp=why.example.org")
    zone.add_txt("why.example.org", b"line one\r\nX-Injected: yes")
    assert (_check(zone).explanation or "").startswith("SPF: example.org")


def test_explanation_is_one_bounded_line_of_printable_ascii() -> None:
    zone = Zone()
    zone.add_txt("example.org", b"v=spf1 -all exp=why.example.org")
    zone.add_txt("why.example.org", b"%{l} " + b"x" * 1000)
    sender = "a\r\nX-Injected:\x00\udcff\u00e9@example.org"
    explanation = _check(zone, sender=sender).explanation or ""
    assert len(explanation) == 256
    assert explanation.startswith("a??X-Injected:??? xxx")
    assert explanation.endswith("x...")


def test_explanation_only_for_fail() -> None:
    zone = _zone(
        {"example.org": "v=spf1 ~all exp=why.example.org", "why.example.org": "no"}
    )
    assert _check(zone).explanation is None


# -- trace -------------------------------------------------------------------


def test_trace_shows_terms_queries_and_the_reason() -> None:
    zone = _zone(
        {
            "example.org": "v=spf1 a include:_spf.example.org -all",
            "_spf.example.org": "v=spf1 ip4:198.51.100.0/24 -all",
        }
    )
    trace = Trace()
    _check(zone, trace=trace)
    lines = trace.render()
    assert 'dns TXT example.org: "v=spf1 a include:_spf.example.org -all"' in lines
    assert "dns A example.org: no records (void)" in lines
    assert "a: no match" in lines
    assert "  ip4:198.51.100.0/24: no match" in lines  # nested one level
    assert "include:_spf.example.org: no match" in lines
    assert "-all: match, fail" in lines
    assert lines[-1] == "result: fail"


# -- bounded work: records of the largest size one DNS answer carries --------

MAX_RECORD = 65_000


def _check_record(record: str, sender: str = "user@example.org") -> CheckResult:
    return _check(_zone({"example.org": record}), sender=sender)


HOSTILE_RECORDS = {
    "exists-many-d": lambda n: "v=spf1 exists:" + "%{d}" * (n // 4) + " -all",
    "a-many-d-labels": lambda n: "v=spf1 a:" + "%{d}." * (n // 5) + "x -all",
    "include-many-l": lambda n: "v=spf1 include:" + "%{l}" * (n // 4) + " -all",
    "exp-many-s": lambda n: "v=spf1 -all exp=%{d}" + "." * (n // 2) + "x",
    "literal-many-labels": lambda n: "v=spf1 a:" + "a." * (n // 2) + "org -all",
}


@pytest.mark.parametrize("make", HOSTILE_RECORDS.values(), ids=HOSTILE_RECORDS.keys())
def test_check_time_grows_at_most_linearly_with_the_record(
    make: Callable[[int], str],
) -> None:
    assert growth(make, _check_record, 1000) < LINEAR_BOUND


@pytest.mark.parametrize("make", HOSTILE_RECORDS.values(), ids=HOSTILE_RECORDS.keys())
def test_a_check_of_a_hostile_record_costs_no_more_than_of_a_plain_one(
    make: Callable[[int], str],
) -> None:
    plain = "v=spf1 " + " ".join(["ip4:192.0.2.1"] * (MAX_RECORD // 14))
    hostile = make(MAX_RECORD - 30)
    assert len(hostile) <= MAX_RECORD
    baseline = best_time(lambda: _check_record(plain), repeat=3)
    checked = _check_record(hostile)  # parsed once, as the daemon's memo does
    assert checked.result in set(SpfResult)
    assert len(checked.problem or "") < 400
    assert best_time(lambda: _check_record(hostile), repeat=1) < 10 * baseline


def test_an_explanation_of_many_macros_is_expanded_only_as_far_as_kept() -> None:
    zone = _zone(
        {
            "example.org": "v=spf1 -all exp=exp.example.org",
            "exp.example.org": "%{s} " * 12_000,
        }
    )
    started = best_time(lambda: _check(zone, sender="x" * 2000 + "@example.org"))
    checked = _check(zone, sender="x" * 2000 + "@example.org")
    assert checked.result is SpfResult.FAIL
    assert len(checked.explanation or "") <= 256
    assert started < 10 * best_time(lambda: _check(zone))


def test_a_sender_the_size_of_an_smtp_line_costs_linear_time() -> None:
    record = "v=spf1 exists:%{l}.%{l1r-}.%{s}.x.example.org -all"

    def make(n: int) -> str:
        return "a-." * n + "b@example.org"

    ratio = growth(make, lambda sender: _check_record(record, sender), 2000)
    assert ratio < LINEAR_BOUND


def _addresses_zone(record: str, names: int, per_name: int) -> Zone:
    zone = _zone({"example.org": record})
    for n in range(names):
        for k in range(per_name):
            zone.add_a(f"h{n}.example.org", str(ipaddress.IPv4Address((10 << 24) + k)))
    return zone


@pytest.mark.parametrize(
    ("per_name", "result"),
    [
        pytest.param(120, SpfResult.PERMERROR, id="9x120-over-1000"),
        pytest.param(110, SpfResult.FAIL, id="9x110-within"),
    ],
)
def test_the_records_one_check_reads_are_bounded(
    per_name: int, result: SpfResult
) -> None:
    terms = " ".join(f"a:h{n}.example.org" for n in range(9))
    checked = _check(_addresses_zone(f"v=spf1 {terms} -all", 9, per_name))
    assert checked.result is result
    if result is SpfResult.PERMERROR:
        assert "more than 1000 DNS records in one check" in (checked.problem or "")


def test_the_record_bound_is_a_limit_of_the_check() -> None:
    terms = " ".join(f"a:h{n}.example.org" for n in range(3))
    zone = _addresses_zone(f"v=spf1 {terms} -all", 3, 20)
    assert _check(zone, limits=Limits(max_records=60)).result is SpfResult.PERMERROR
    assert _check(zone, limits=Limits(max_records=61)).result is SpfResult.FAIL
