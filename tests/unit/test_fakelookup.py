"""FakeLookup over openspf-style zonedata: the suite README's conventions."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from helpers.dnszone import Zone
from helpers.fakelookup import FakeLookup
from spf_milter.spf.lookup import DnsServerFailure, DnsTimeout

T = TypeVar("T")

ZONEDATA: dict[str, list[object]] = {
    "example.com": [
        {"SPF": "v=spf1 mx -all"},
        {"A": "192.0.2.1"},
        {"AAAA": "2001:DB8::1"},
        {"MX": [20, "mx2.example.com."]},
        {"MX": [10, "MX1.example.com"]},
    ],
    "both.example.net": [{"TXT": "v=spf1 -all"}, {"SPF": "v=spf1 +all"}],
    "spfonly.example.net": [{"SPF": "v=spf1 -all"}, {"TXT": "NONE"}],
    "spftimeout.example.net": [{"TXT": "v=spf1 -all"}, "TIMEOUT"],
    "alltimeout.example.net": ["TIMEOUT"],
    "multi.example.org": [{"SPF": ["v=spf1 ", "ip4:192.0.2.5", " -all"]}],
    "null.example.com": [{"SPF": ["v=spf1 ip4:", "192.0.2.5 -all"]}, {"SPF": []}],
    "bytes.example.com": [{"TXT": "v=spf1 \x96 \xef\xbb\xbf"}],
    "Mixed.Example.ORG.": [{"A": "192.0.2.9"}],
    "alias.example.org": [{"CNAME": "multi.example.org."}],
    "loop.example.org": [{"CNAME": "LOOP.example.org."}],
    "4.3.2.1.in-addr.arpa": [{"PTR": "host.example.com."}],
    "deep.sub.example.org": [{"A": "192.0.2.7"}],
}


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture
def lookup() -> FakeLookup:
    return FakeLookup(Zone.from_openspf(ZONEDATA))


def test_spf_records_are_also_served_as_txt(lookup: FakeLookup) -> None:
    assert run(lookup.txt("example.com")) == [b"v=spf1 mx -all"]


def test_own_txt_entry_stops_spf_copying(lookup: FakeLookup) -> None:
    assert run(lookup.txt("both.example.net")) == [b"v=spf1 -all"]


def test_txt_none_means_no_txt_records(lookup: FakeLookup) -> None:
    assert run(lookup.txt("spfonly.example.net")) == []


def test_timeout_name_answers_the_types_it_lists(lookup: FakeLookup) -> None:
    assert run(lookup.txt("spftimeout.example.net")) == [b"v=spf1 -all"]


def test_timeout_name_times_out_for_types_it_lacks(lookup: FakeLookup) -> None:
    with pytest.raises(DnsTimeout):
        run(lookup.a("spftimeout.example.net"))


def test_bare_timeout_times_out_for_every_type(lookup: FakeLookup) -> None:
    with pytest.raises(DnsTimeout):
        run(lookup.txt("alltimeout.example.net"))
    with pytest.raises(DnsTimeout):
        run(lookup.mx("alltimeout.example.net"))


def test_list_is_one_record_of_strings_joined(lookup: FakeLookup) -> None:
    assert run(lookup.txt("multi.example.org")) == [b"v=spf1 ip4:192.0.2.5 -all"]


def test_empty_list_is_one_empty_record(lookup: FakeLookup) -> None:
    assert run(lookup.txt("null.example.com")) == [b"v=spf1 ip4:192.0.2.5 -all", b""]


def test_text_is_served_byte_for_byte(lookup: FakeLookup) -> None:
    assert run(lookup.txt("bytes.example.com")) == [b"v=spf1 \x96 \xef\xbb\xbf"]


def test_names_match_case_insensitively_with_or_without_dot(lookup: FakeLookup) -> None:
    expected = [ipaddress.IPv4Address("192.0.2.9")]
    assert run(lookup.a("mixed.example.org")) == expected
    assert run(lookup.a("MIXED.example.org.")) == expected


def test_addresses_are_typed(lookup: FakeLookup) -> None:
    assert run(lookup.a("example.com")) == [ipaddress.IPv4Address("192.0.2.1")]
    assert run(lookup.aaaa("example.com")) == [ipaddress.IPv6Address("2001:db8::1")]


def test_mx_lowest_preference_first_without_trailing_dot(lookup: FakeLookup) -> None:
    assert run(lookup.mx("example.com")) == ["MX1.example.com", "mx2.example.com"]


def test_ptr_target_without_trailing_dot(lookup: FakeLookup) -> None:
    assert run(lookup.ptr("4.3.2.1.in-addr.arpa")) == ["host.example.com"]


def test_cname_is_followed(lookup: FakeLookup) -> None:
    assert run(lookup.txt("alias.example.org")) == [b"v=spf1 ip4:192.0.2.5 -all"]


def test_cname_loop_is_a_server_failure(lookup: FakeLookup) -> None:
    with pytest.raises(DnsServerFailure):
        run(lookup.a("loop.example.org"))


def test_long_cname_chain_is_a_server_failure() -> None:
    zone = Zone()
    for i in range(16):
        zone.add_cname(f"c{i}.example.com", f"c{i + 1}.example.com")
    zone.add_a("c16.example.com", "192.0.2.1")
    lookup = FakeLookup(zone)
    assert run(lookup.a("c1.example.com")) == [ipaddress.IPv4Address("192.0.2.1")]
    with pytest.raises(DnsServerFailure):
        run(lookup.a("c0.example.com"))


def test_nxdomain_and_nodata_are_both_empty(lookup: FakeLookup) -> None:
    assert run(lookup.txt("absent.example.com")) == []  # NXDOMAIN
    assert run(lookup.ptr("example.com")) == []  # NODATA
    assert run(lookup.txt("sub.example.org")) == []  # empty non-terminal


def test_servfail_and_refused_are_server_failures() -> None:
    zone = Zone()
    zone.set_servfail("broken.example.com")
    zone.set_refused("closed.example.com")
    lookup = FakeLookup(zone)
    with pytest.raises(DnsServerFailure, match="SERVFAIL"):
        run(lookup.txt("broken.example.com"))
    with pytest.raises(DnsServerFailure, match="REFUSED"):
        run(lookup.txt("closed.example.com"))


def test_every_query_is_recorded_in_order(lookup: FakeLookup) -> None:
    run(lookup.txt("example.com"))
    run(lookup.mx("example.com"))
    run(lookup.txt("example.com"))
    with pytest.raises(DnsTimeout):
        run(lookup.a("alltimeout.example.net"))
    assert lookup.queries == [
        ("TXT", "example.com"),
        ("MX", "example.com"),
        ("TXT", "example.com"),
        ("A", "alltimeout.example.net"),
    ]


def test_zone_changes_are_seen_after_a_query() -> None:
    zone = Zone()
    lookup = FakeLookup(zone)
    assert run(lookup.txt("example.com")) == []
    zone.add_txt("example.com", b"v=spf1 -all")
    assert run(lookup.txt("example.com")) == [b"v=spf1 -all"]


def test_callers_get_a_fresh_list_each_time(lookup: FakeLookup) -> None:
    run(lookup.txt("example.com")).clear()
    assert run(lookup.txt("example.com")) == [b"v=spf1 mx -all"]


def test_delay_holds_the_answer_back() -> None:
    zone = Zone()
    zone.add_a("slow.example.com", "192.0.2.1")
    zone.set_delay("slow.example.com", 0.05)

    async def race() -> list[str]:
        lookup, done = FakeLookup(zone), []

        async def query(name: str) -> None:
            await lookup.a(name)
            done.append(name)

        async with asyncio.timeout(2):
            await asyncio.gather(query("slow.example.com"), query("fast.example.com"))
        return done

    assert run(race()) == ["fast.example.com", "slow.example.com"]


def test_zone_file_directives_set_behaviours() -> None:
    zone = Zone.from_text(
        "$TTL 300\n"
        "$ORIGIN example.com.\n"
        '@      IN TXT "v=spf1 " "-all"\n'
        "slow   IN A   192.0.2.1\n"
        ";! timeout slow   ; A answered, other types time out\n"
        ";! servfail broken.example.net.\n"
    )
    lookup = FakeLookup(zone)
    assert run(lookup.txt("example.com")) == [b"v=spf1 -all"]
    assert run(lookup.a("slow.example.com")) == [ipaddress.IPv4Address("192.0.2.1")]
    with pytest.raises(DnsTimeout):
        run(lookup.txt("slow.example.com"))
    with pytest.raises(DnsServerFailure):
        run(lookup.txt("broken.example.net"))
