"""Nameserver settings of the dnspython-backed Lookup."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spf_milter.dnsclient.resolver import (
    DnsLookup,
    Nameserver,
    parse_nameserver,
    system_resolver,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1", Nameserver("127.0.0.1", 53), id="ipv4"),
        pytest.param("127.0.0.1:5353", Nameserver("127.0.0.1", 5353), id="ipv4-port"),
        pytest.param("::1", Nameserver("::1", 53), id="bare-ipv6"),
        pytest.param("2001:db8::53", Nameserver("2001:db8::53", 53), id="bare-ipv6-2"),
        pytest.param("[::1]", Nameserver("::1", 53), id="bracketed-ipv6"),
        pytest.param("[::1]:5353", Nameserver("::1", 5353), id="bracketed-ipv6-port"),
        pytest.param("[2001:DB8::1]:53", Nameserver("2001:db8::1"), id="lower-case"),
        pytest.param("192.0.2.1:65535", Nameserver("192.0.2.1", 65535), id="max-port"),
    ],
)
def test_parse_nameserver_accepts(text: str, expected: Nameserver) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "is not an IP address", id="empty"),
        pytest.param("localhost", "is not an IP address", id="hostname"),
        pytest.param("ns.example.com:53", "is not an IP address", id="hostname-port"),
        pytest.param("127.0.0.1:", "port must be", id="empty-port"),
        pytest.param("127.0.0.1:0", "port must be", id="port-zero"),
        pytest.param("127.0.0.1:65536", "port must be", id="port-too-big"),
        pytest.param("127.0.0.1:+53", "port must be", id="signed-port"),
        pytest.param("127.0.0.1:dns", "port must be", id="named-port"),
        pytest.param(":53", "is not an IP address", id="no-host"),
        pytest.param("256.0.0.1", "is not an IP address", id="bad-ipv4"),
        pytest.param("[::1", "expected [IPv6]", id="unclosed-bracket"),
        pytest.param("[::1]53", "expected [IPv6]", id="no-colon-after-bracket"),
        pytest.param("[::1]:", "port must be", id="bracket-empty-port"),
        pytest.param("[127.0.0.1]:53", "brackets are for IPv6", id="bracketed-ipv4"),
        pytest.param("::g", "is not an IP address", id="bad-ipv6"),
    ],
)
def test_parse_nameserver_rejects_naming_the_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_nameserver(text)
    assert repr(text) in str(caught.value)


def test_nameserver_renders_as_host_port() -> None:
    assert str(Nameserver("192.0.2.1", 53)) == "192.0.2.1:53"
    assert str(Nameserver("::1", 5353)) == "[::1]:5353"


def test_lookup_accepts_explicit_nameservers_without_system_config() -> None:
    DnsLookup([parse_nameserver("127.0.0.1:5353")], timeout=1.0)


def test_system_resolver_reads_nameservers_and_timeout(tmp_path: Path) -> None:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text(
        "# comment\nnameserver 192.0.2.53\nnameserver ::1\noptions timeout:3\n"
    )
    resolver = system_resolver(str(resolv_conf))
    assert resolver.servers == (Nameserver("192.0.2.53"), Nameserver("::1"))
    assert resolver.attempt_timeout == 3


def test_system_resolver_without_nameservers_names_the_file(tmp_path: Path) -> None:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("search example.com\n")
    with pytest.raises(ValueError, match=re.escape(str(resolv_conf))):
        system_resolver(str(resolv_conf))
