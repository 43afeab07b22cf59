"""What the load driver sends: record shapes, clients, and weighted mixes.

Each shape names a sender domain of bench/zones/load.zone, the client
addresses that give the intended MAIL FROM result, and that result; every
message uses the HELO name ``mail.load.example`` (whose record passes the
clients of the passing shapes). A fresh shape uses a new generation of
names per message (see bench/loaddns.py), HELO name included, so no cache
has seen them: the cold-cache runs are made of those.

A workload is a weighted mix of shapes; message ``n`` of a run is a pure
function of ``n``, so both milters get the same sequence of messages.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from bench.loaddns import FRESH_SUFFIX, fresh_domain

HELO: Final = "mail.load.example"
FRESH_HELO: Final = f"mail.{FRESH_SUFFIX}"
RECIPIENT: Final = "postmaster@rcpt.bench.example"
CYCLE: Final = 1000  # length of a mix's repeating sequence of shapes


@dataclass(frozen=True, slots=True)
class Message:
    """One message's envelope, and the MAIL FROM result it should get."""

    shape: str
    client_ip: str
    helo: str
    sender: str
    recipient: str
    expected: str


@dataclass(frozen=True, slots=True)
class Shape:
    """A sender domain, clients that give ``expected``, and freshness."""

    name: str
    domain: str
    clients: tuple[str, ...]
    expected: str
    fresh: bool = False

    def message(self, n: int, generation: int) -> Message:
        """Return message ``n`` of this shape (``generation`` for fresh names)."""
        domain, helo = self.domain, HELO
        if self.fresh:
            domain = fresh_domain(self.domain, generation)
            helo = fresh_domain(FRESH_HELO, generation)
        client = self.clients[n % len(self.clients)]
        sender = f"user{n % 997}@{domain}"
        return Message(self.name, client, helo, sender, RECIPIENT, self.expected)


def _hosts(prefix: str, first: int, last: int) -> tuple[str, ...]:
    return tuple(f"{prefix}.{host}" for host in range(first, last + 1))


SHAPES: Final = {
    shape.name: shape
    for shape in (
        Shape("ip4", "ip4.load.example", _hosts("192.0.2", 1, 254), "pass"),
        Shape("ip4-fail", "ip4.load.example", _hosts("203.0.113", 1, 254), "fail"),
        Shape("include", "chain.load.example", _hosts("192.0.15", 1, 126), "pass"),
        Shape("mx", "mx.load.example", ("192.0.2.55",), "pass"),
        Shape("a", "a.load.example", ("192.0.2.80",), "pass"),
        Shape("none", "none.load.example", _hosts("192.0.2", 1, 254), "none"),
        Shape("slow", "slow.load.example", _hosts("192.0.2", 1, 254), "temperror"),
        Shape(
            "include-cold",
            f"chain.{FRESH_SUFFIX}",
            _hosts("192.0.15", 1, 126),
            "pass",
            fresh=True,
        ),
        Shape("mx-cold", f"mx.{FRESH_SUFFIX}", ("192.0.2.55",), "pass", fresh=True),
        Shape(
            "providers-cold",
            f"providers.{FRESH_SUFFIX}",
            _hosts("192.0.15", 1, 126),
            "pass",
            fresh=True,
        ),
        Shape(
            "slow-cold",
            f"slow.{FRESH_SUFFIX}",
            _hosts("192.0.2", 1, 254),
            "temperror",
            fresh=True,
        ),
    )
}

# The mixed workload: mostly known senders, some refused, some without SPF,
# and a share of senders never seen before (their names are fresh).
MIXED: Final = {
    "include": 25,
    "ip4": 20,
    "mx": 15,
    "a": 10,
    "ip4-fail": 10,
    "none": 10,
    "include-cold": 10,
}

# Every shape alone is a workload too, for finding where time goes.
WORKLOADS: Final[Mapping[str, Mapping[str, int]]] = {
    **{name: {name: 1} for name in SHAPES},
    "mixed": MIXED,
}


class Workload:
    """A weighted mix of shapes as a deterministic sequence of messages."""

    def __init__(self, name: str, generation_base: int = 0) -> None:
        weights = WORKLOADS[name]
        total = sum(weights.values())
        cycle = [
            SHAPES[shape]
            for shape, weight in weights.items()
            for _ in range(round(CYCLE * weight / total))
        ]
        random.Random(name).shuffle(cycle)  # a fixed, fair interleaving
        self.name = name
        self._cycle = cycle
        self._generation_base = generation_base

    def message(self, n: int) -> Message:
        """Return message ``n`` of the sequence."""
        shape = self._cycle[n % len(self._cycle)]
        return shape.message(n, self._generation_base + n)
