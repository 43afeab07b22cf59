"""Our own Python per message, step by step: the daemon's callbacks without libmilter.

    .venv/bin/python -m bench.glue [--shape include] [--messages 20000] [--rounds 5]
    .venv/bin/python -m bench.glue --profile          # cProfile of one run

What the daemon's CPU per message is made of, apart from libmilter,
pymilter's C module and the kernel: one message after another through
``callbacks.SpfMilter``, the daemon's own class, called as pymilter's C
module calls it (the entry points ``serve()`` registers: ``hello``,
``envfrom_bytes``, ``envrcpt_bytes``, ``header_bytes``, ``eom``, all but
``header_bytes`` through ``Traffic.call``), after the negotiation the
daemon makes with a Postfix (every no-reply step it asks for granted).
libmilter's context is a stand-in whose calls (macros, replies, header
edits) do nothing. The Service is the daemon's: ``make_settings`` on a
configuration file, the shared ``DnsCache``, the ``EventLoop`` and the
``CheckRunner``, against tests/helpers/dnsserver.py serving
bench/shapes.py's zone on 127.0.0.1, warm (every answer cached, as for a
busy daemon).

The table: the thread CPU time of each step, in microseconds per message
(``time.thread_time_ns`` around each call; the timer's own cost is in the
figures, about 0.2 us a step), their sum, and beside it the two SPF checks
alone: ``check_host()`` for the HELO and the MAIL FROM identity, awaited
directly as bench/engine.py does. Medians of ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ipaddress
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import Milter

from bench.shapes import HELO, SHAPES, Shape, build_zone
from bench.testhelpers import DnsServer
from spf_milter.callbacks import Negotiation, UnixSocketMilter
from spf_milter.config import load_all
from spf_milter.eventloop import EventLoop
from spf_milter.service import Service, make_cache, make_settings
from spf_milter.spf import Lookup, Memo, check_host

STEPS: Final = ("connect", "helo", "mail", "rcpt", "header", "eom", "close")
# pymilter's C module gives the name decoded, the value as bytes.
HEADERS: Final = (
    ("From", b"Alice <alice@example.org>"),
    ("To", b"bob@dest.example"),
    ("Subject", b"A message of the benchmark"),
    ("Date", b"Sat, 05 Dec 2026 07:00:00 +0000"),
    ("Message-ID", b"<1@example.org>"),
)
# What a Postfix offers in its negotiation (milter8.c): every action and step.
POSTFIX_OFFER: Final = (0x1FF, 0x1FFFFF)
MAX_MESSAGES: Final = 1_000_000
NEGOTIATION: Final = Negotiation.of(UnixSocketMilter)


class StubContext:
    """libmilter's context, as far as the callbacks use it: it does nothing."""

    def __init__(self) -> None:
        self.private: object = None

    def setpriv(self, private: object) -> None:
        self.private = private

    def getpriv(self) -> object:
        return self.private

    def getsymval(self, name: str) -> str | None:
        return "4Q7b1Z2mXYz" if name == "i" else None

    def setsymlist(self, stage: int, names: str) -> None:
        pass

    def setreply(self, *args: str) -> None:
        pass

    def addheader(self, name: str, value: str, index: int) -> None:
        pass

    def chgheader(self, name: str, index: int, value: str) -> None:
        pass

    def quarantine(self, reason: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Round:
    """Thread CPU microseconds per message: each step, and the checks alone."""

    steps: dict[str, float]
    checks: float

    @property
    def total(self) -> float:
        return sum(self.steps.values())


def start_service(work: Path, port: int) -> Service:
    """Build the daemon's Service on a configuration naming our DNS server."""
    config = work / "spf-milter.yaml"
    (work / "policy.yaml").write_text("default: {}\n")
    config.write_text(
        "socket: unix:/run/unused.sock\nauthserv_id: mx.bench.example\n"
        "trusted_networks: []\npolicy: policy.yaml\n"
        f'dns:\n  nameservers: ["127.0.0.1:{port}"]\n'
        "log:\n  level: warning\n"
    )
    configuration = load_all(config)
    cache = make_cache(configuration.daemon.dns)
    settings = make_settings(configuration, cache=cache)
    loop = EventLoop("bench-glue")
    loop.start()
    return Service(config, settings, loop, cache)


def one_message(service: Service, shape: Shape, number: int, spent: list[int]) -> None:
    """Run one message through a new connection; add each step's CPU to ``spent``.

    The milter object is made as serve() makes it, with the negotiation
    worked out once for its class.
    """
    clock = time.thread_time_ns
    call = service.traffic.call
    context = StubContext()
    started = clock()
    milter = UnixSocketMilter(service, number, NEGOTIATION)
    milter._setctx(context)
    options = [*POSTFIX_OFFER, 0, 0]
    milter.negotiate(options)
    address = shape.client
    call(milter.connect, f"[{address}]", 2 if "." in address else 10, address)
    now = clock()
    spent[0] += now - started
    call(milter.hello, HELO)
    then = clock()
    spent[1] += then - now
    call(milter.envfrom_bytes, f"<{shape.sender}>".encode())
    now = clock()
    spent[2] += now - then
    call(milter.envrcpt_bytes, b"<bob@dest.example>")
    then = clock()
    spent[3] += then - now
    for name, value in HEADERS:
        milter.header_bytes(name, value)
    now = clock()
    spent[4] += now - then
    call(milter.eom)
    then = clock()
    spent[5] += then - now
    call(Milter.close_callback, context)
    spent[6] += clock() - then


def time_glue(service: Service, shape: Shape, messages: int) -> dict[str, float]:
    """Return the CPU microseconds per message of each step, over ``messages``."""
    spent = [0] * len(STEPS)
    for number in range(messages):
        one_message(service, shape, number, spent)
    return {step: ns / messages / 1000 for step, ns in zip(STEPS, spent, strict=True)}


def time_checks(lookup: Lookup, memo: Memo, shape: Shape, messages: int) -> float:
    """Return the CPU microseconds of the two checks alone, as bench/engine.py."""
    client = ipaddress.ip_address(shape.client)

    async def run() -> float:
        started = time.thread_time_ns()
        for _ in range(messages):
            await check_host(
                lookup, client, HELO, f"postmaster@{HELO}", helo=HELO, memo=memo
            )
            await check_host(
                lookup, client, shape.domain, shape.sender, helo=HELO, memo=memo
            )
        return (time.thread_time_ns() - started) / messages / 1000

    return asyncio.run(run())


def measure(service: Service, shape: Shape, messages: int, rounds: int) -> Round:
    """Warm everything, then return the medians of ``rounds`` rounds."""
    lookup, memo = service.settings.lookup, service.runner.memo
    time_glue(service, shape, min(messages, 500))
    time_checks(lookup, memo, shape, min(messages, 500))
    runs = [
        (
            time_glue(service, shape, messages),
            time_checks(lookup, memo, shape, messages),
        )
        for _ in range(rounds)
    ]
    steps = {step: statistics.median(glue[step] for glue, _ in runs) for step in STEPS}
    return Round(steps, statistics.median(checks for _, checks in runs))


def print_table(shape: Shape, result: Round, rounds: int, messages: int) -> None:
    print(f"shape {shape.name}: {shape.description}")
    print(f"median of {rounds} rounds of {messages:,} messages; us of thread CPU\n")
    print("| " + " | ".join(STEPS) + " | sum | the two checks alone |")
    print("|" + "--:|" * (len(STEPS) + 2))
    cells = [f"{result.steps[step]:.1f}" for step in STEPS]
    cells += [f"**{result.total:.1f}**", f"{result.checks:.1f}"]
    print("| " + " | ".join(cells) + " |")


def profile(run: Callable[[], Any], top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=[s.name for s in SHAPES], default="include")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one run")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    if not (0 < args.messages <= MAX_MESSAGES and 0 < args.rounds <= 25):
        parser.error(f"--messages in 1..{MAX_MESSAGES}, --rounds in 1..25")
    shape = next(s for s in SHAPES if s.name == args.shape)
    zone = build_zone()
    zone.add_txt(HELO, b"v=spf1 ip4:192.0.0.0/16 ip4:198.51.0.0/16 -all")
    with DnsServer(zone) as server, tempfile.TemporaryDirectory() as work:
        service = start_service(Path(work), server.port)
        try:
            if args.profile:
                time_glue(service, shape, 500)
                profile(lambda: time_glue(service, shape, args.messages), args.top)
                return 0
            result = measure(service, shape, args.messages, args.rounds)
        finally:
            service.loop.stop()
    print_table(shape, result, args.rounds, args.messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
