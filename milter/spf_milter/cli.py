"""The ``spf-milter`` command: argument parsing and the subcommands' wiring."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from spf_milter import __version__
from spf_milter.resolver import DnsLookup, Nameserver, parse_nameserver
from spf_milter.spf import Identity, Limits, Trace
from spf_milter.verify import (
    IdentityCheck,
    check_helo,
    check_mail_from,
    parse_mail_from,
)

EX_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def _ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.removeprefix("IPv6:"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _helo(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the HELO name must not be empty")
    return text.strip()


def _nameserver(text: str) -> Nameserver:
    try:
        return parse_nameserver(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``spf-milter`` command line."""
    parser = _Parser(
        prog="spf-milter", description="SPF milter for Postfix and Sendmail"
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    check = commands.add_parser(
        "check",
        help="check one SPF identity, like spfquery",
        description="Check the SPF record of the MAIL FROM (or HELO) identity of a "
        "client and print the result. Exits 0 whatever the SPF result.",
    )
    check.add_argument("--ip", required=True, type=_ip_address, help="client address")
    check.add_argument(
        "--sender",
        required=True,
        help="MAIL FROM address; '' is the null sender, checked as postmaster@HELO",
    )
    check.add_argument("--helo", required=True, type=_helo, help="HELO/EHLO name")
    check.add_argument(
        "--identity",
        choices=[str(i) for i in Identity],
        default=str(Identity.MAILFROM),
        help="which identity to check (default: mailfrom)",
    )
    check.add_argument(
        "--nameserver",
        action="append",
        default=[],
        type=_nameserver,
        metavar="HOST[:PORT]",
        help="DNS server to ask (repeatable; default: the system's resolv.conf)",
    )
    check.add_argument("--receiver", default="unknown", help="receiving host, %%{r}")
    check.add_argument(
        "--timeout", type=_positive, default=5.0, help="seconds per DNS query (5)"
    )
    check.add_argument(
        "--time-limit", type=_positive, default=20.0, help="seconds per check (20)"
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument(
        "--trace", action="store_true", help="show each term and DNS query"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return _check(args)
    raise AssertionError(args.command)  # argparse allows only known commands


def _check(args: argparse.Namespace) -> int:
    lookup = DnsLookup(args.nameserver, timeout=args.timeout)
    limits = Limits(time_limit=args.time_limit)
    trace = Trace() if args.trace else None
    if args.identity == Identity.HELO:
        coro = check_helo(
            lookup,
            args.ip,
            args.helo,
            receiver=args.receiver,
            limits=limits,
            trace=trace,
        )
    else:
        coro = check_mail_from(
            lookup,
            args.ip,
            parse_mail_from(args.sender),
            args.helo,
            receiver=args.receiver,
            limits=limits,
            trace=trace,
        )
    checked = asyncio.run(coro)
    if trace is not None:
        print("\n".join(trace.render()), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(_as_json(checked)))
    else:
        print(_as_text(checked))
    return 0


def _as_json(checked: IdentityCheck) -> dict[str, object]:
    result = checked.result
    return {
        "result": str(result.result),
        "identity": str(checked.identity),
        "sender": checked.sender,
        "domain": result.domain,
        "mechanism": result.mechanism,
        "explanation": result.explanation,
        "problem": result.problem,
        "lookups": result.lookups,
        "void_lookups": result.void_lookups,
    }


def _as_text(checked: IdentityCheck) -> str:
    result = checked.result
    lines = [f"{result.result}  ({checked.identity} {checked.sender!r})"]
    if result.mechanism:
        lines.append(f"mechanism:   {result.mechanism}")
    if result.problem:
        lines.append(f"problem:     {result.problem}")
    if result.explanation:
        lines.append(f"explanation: {result.explanation}")
    lines.append(f"lookups:     {result.lookups} DNS terms, {result.void_lookups} void")
    return "\n".join(lines)
