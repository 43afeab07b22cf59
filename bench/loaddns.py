"""The benchmark's DNS server: bench/zones/load.zone on 127.0.0.1:53.

Run as a process of its own inside the benchmark's network namespace (so
its CPU time is its own, and both milters' resolvers reach it at the
address /etc/resolv.conf names there)::

    python -m bench.loaddns [--zone FILE] [--port 53]

It is tests/helpers/dnsserver.py's server with two additions for load:

- ``LoadZone``: fresh names on demand (a query for
  ``NAME.gN.fresh.load.example`` is answered from the template
  ``NAME.fresh.load.example``, with the suffix rewritten in the answer) and
  one delay for every answer (``delay_all``), besides per-name delays;
- ``MemoServer``: a query identical to an earlier one, octet for octet but
  for its id, gets the earlier answer back without being parsed or rendered
  again, so that answering costs the server little even for the incumbent,
  which asks the DNS for everything on every message.

Commands, one per line on stdin; each is answered with one line on stdout:
``delay SECONDS`` (every answer), ``slow NAME SECONDS`` (one name),
``stats`` (``queries N``), ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import sys
from pathlib import Path
from typing import Final

import dns.exception
import dns.message
import dns.rdatatype

from bench.testhelpers import (
    DnsServer,
    Mx,
    Rdata,
    Resolution,
    Transport,
    Zone,
    normalize,
)

ZONE_FILE: Final = Path(__file__).resolve().parent / "zones" / "load.zone"
FRESH_SUFFIX: Final = "fresh.load.example"
_FRESH: Final = re.compile(r"(?P<head>.*)\.(?P<gen>g\d+)\." + re.escape(FRESH_SUFFIX))


def fresh_domain(name: str, generation: int) -> str:
    """Return template ``NAME.fresh.load.example`` as generation ``generation``."""
    head = name.removesuffix("." + FRESH_SUFFIX)
    return f"{head}.g{generation}.{FRESH_SUFFIX}"


class LoadZone(Zone):
    """A Zone with fresh-name generations and a delay for every answer."""

    def __init__(self) -> None:
        super().__init__()
        self.delay_all = 0.0

    def set_delay_all(self, seconds: float) -> None:
        """Hold every answer back by at least ``seconds``."""
        self.delay_all = seconds
        self.version += 1

    def resolve(self, name: str, rdtype: str) -> Resolution:
        """Resolve ``name``, mapping a fresh generation onto its template."""
        key = normalize(name)
        found = _FRESH.fullmatch(key)
        if found is None:
            resolution = super().resolve(key, rdtype)
        else:
            template = f"{found['head']}.{FRESH_SUFFIX}"
            generation = f"{found['gen']}.{FRESH_SUFFIX}"
            resolution = _rewrite(super().resolve(template, rdtype), generation)
        if resolution.delay < self.delay_all:
            resolution = dataclasses.replace(resolution, delay=self.delay_all)
        return resolution


def _rewrite(resolution: Resolution, generation: str) -> Resolution:
    """Rename the template suffix to ``generation`` in every name and text."""
    old, new = FRESH_SUFFIX, generation

    def rename(value: Rdata) -> Rdata:
        match value:
            case tuple():
                return tuple(s.replace(old.encode(), new.encode()) for s in value)
            case Mx(preference, exchange):
                return Mx(preference, exchange.replace(old, new))
            case str():
                return value.replace(old, new)
        return value

    return dataclasses.replace(
        resolution,
        cnames=tuple(name.replace(old, new) for name in resolution.cnames),
        records=tuple(rename(value) for value in resolution.records),
    )


class MemoServer(DnsServer):
    """DnsServer that replays the answer to a query it has seen before."""

    def __init__(self, zone: LoadZone, port: int) -> None:
        super().__init__(zone, port=port)
        self.load_zone = zone
        self.answered = 0
        self._memo: dict[tuple[str, bytes], tuple[float, bytes | None]] = {}
        self._memo_version = -1

    async def reply(self, wire: bytes, transport: Transport) -> bytes | None:
        """Answer ``wire``; replay a memoised answer under the query's id."""
        self.answered += 1
        if self._memo_version != self.load_zone.version:
            self._memo.clear()
            self._memo_version = self.load_zone.version
            self.clear_queries()  # the parent's log would grow without bound
        key = (transport, wire[2:])
        hit = self._memo.get(key)
        if hit is None:
            delay = self._delay_of(wire)
            answer = await super().reply(wire, transport)
            if delay is not None:
                self._memo[key] = (delay, None if answer is None else answer[2:])
            return answer
        delay, rest = hit
        if delay > 0:
            await asyncio.sleep(delay)
        return None if rest is None else wire[:2] + rest

    def _delay_of(self, wire: bytes) -> float | None:
        """Return the delay of the question in ``wire``; None if unreadable."""
        try:
            query = dns.message.from_wire(wire)
            question = query.question[0]
        except (dns.exception.DNSException, IndexError):
            return None
        name = question.name.to_text(omit_final_dot=True)
        rdtype = dns.rdatatype.to_text(question.rdtype)
        return self.load_zone.resolve(name, rdtype).delay


def _command(server: MemoServer, line: str) -> str:
    """Carry out one control command; return the answer line."""
    words = line.split()
    match words:
        case ["delay", seconds]:
            server.load_zone.set_delay_all(float(seconds))
            return f"ok delay {float(seconds)}"
        case ["slow", name, seconds]:
            server.load_zone.set_delay(name, float(seconds))
            return f"ok slow {name} {float(seconds)}"
        case ["stats"]:
            return f"ok queries {server.answered}"
        case _:
            return f"error unknown command {line.strip()!r}"


def main(argv: list[str] | None = None) -> int:
    """Serve the zone until ``quit`` or the end of stdin."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zone", type=Path, default=ZONE_FILE)
    parser.add_argument("--port", type=int, default=53)
    args = parser.parse_args(argv)
    zone = LoadZone.from_text(args.zone.read_text(encoding="utf-8"))
    assert isinstance(zone, LoadZone)
    server = MemoServer(zone, args.port)
    with server:
        print(f"ok listening 127.0.0.1:{server.port}", flush=True)
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            print(_command(server, line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
