"""The benchmark's zone and the record shapes it times, one client each.

All shapes live in one zone, so both engines answer from the same data in
one process. The records are the kinds real senders publish: an include
chain of provider netblocks, ``mx``, ``a`` and a single ``ip4``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.testhelpers import Zone

HELO = "mail.example.net"


@dataclass(frozen=True, slots=True)
class Shape:
    """One timed case: a sender domain, a client and the result both expect."""

    name: str
    description: str
    domain: str
    client: str
    result: str

    @property
    def sender(self) -> str:
        return f"alice@{self.domain}"


# Three levels, 20 networks (17 ip4, 3 ip6), the client in the deepest level.
_CHAIN = {
    "chain.example.com": (
        [f"198.51.{n}.0/24" for n in range(100, 105)],
        ["2001:db8:1::/48"],
        "include:_spf.chain.example.com -all",
    ),
    "_spf.chain.example.com": (
        [f"203.0.{n}.0/24" for n in range(1, 7)],
        ["2001:db8:2::/48"],
        "include:_netblocks.chain.example.com ~all",
    ),
    "_netblocks.chain.example.com": (
        [f"192.0.{n}.0/25" for n in range(10, 16)],
        ["2001:db8:3::/48"],
        "~all",
    ),
}

SHAPES = (
    Shape(
        "include",
        "3-level include chain, 20 networks, match in the deepest level",
        "chain.example.com",
        "192.0.15.77",
        "pass",
    ),
    Shape(
        "include-fail",
        "the same chain, client matches nothing: -all and the explanation",
        "chain.example.com",
        "192.0.2.200",
        "fail",
    ),
    Shape(
        "mx",
        "v=spf1 mx -all, 5 MX hosts, client is the last one",
        "mx.example.com",
        "192.0.2.55",
        "pass",
    ),
    Shape("a", "v=spf1 a -all", "a.example.com", "192.0.2.80", "pass"),
    Shape(
        "ip4",
        "v=spf1 ip4:192.0.2.0/24 -all",
        "ip4.example.com",
        "192.0.2.10",
        "pass",
    ),
)


def build_zone() -> Zone:
    """Return the zone that holds every shape's records."""
    zone = Zone()
    for name, (ip4, ip6, tail) in _CHAIN.items():
        terms = [f"ip4:{net}" for net in ip4] + [f"ip6:{net}" for net in ip6]
        zone.add_txt(name, " ".join(["v=spf1", *terms, tail]).encode())
    zone.add_txt("mx.example.com", b"v=spf1 mx -all")
    for n in range(1, 6):
        host = f"mx{n}.mx.example.com"
        zone.add_mx("mx.example.com", n * 10, host)
        zone.add_a(host, f"192.0.2.{50 + n}")
        zone.add_aaaa(host, f"2001:db8:50::{n}")
    zone.add_txt("a.example.com", b"v=spf1 a -all")
    zone.add_a("a.example.com", "192.0.2.80")
    zone.add_aaaa("a.example.com", "2001:db8:80::1")
    zone.add_txt("ip4.example.com", b"v=spf1 ip4:192.0.2.0/24 -all")
    return zone
