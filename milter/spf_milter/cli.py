"""The ``spf-milter`` command: argument parsing and the subcommands' wiring."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from spf_milter import __version__, checkcmd, daemon
from spf_milter.config import (
    EX_CONFIG,
    ConfigError,
    Nameserver,
    load_all,
    parse_nameserver,
)
from spf_milter.spf import Identity

EX_USAGE = 2
DEFAULT_CONFIG = Path("/etc/spf-milter/spf-milter.yaml")


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
        dest="command", metavar="COMMAND", title="commands", parser_class=_Parser
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
    check.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="also apply this daemon configuration and its policy: print the"
        " action, the SMTP reply and the header fields the daemon would produce",
    )
    check.add_argument(
        "--rcpt",
        metavar="ADDRESS",
        help="with --config: the recipient whose domain's policy applies",
    )
    run = commands.add_parser(
        "run",
        help="run the milter daemon in the foreground",
        description="Run the milter: serve the MTA on the configured socket until "
        "SIGTERM. SIGHUP reloads the configuration and the policy.",
    )
    run.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"daemon configuration (default: {DEFAULT_CONFIG})",
    )
    check_config = commands.add_parser(
        "check-config",
        help="validate the configuration and every policy file",
        description="Load the configuration and the policy as the daemon would; "
        "print each problem as FILE:LINE:COLUMN: message. Exit 0 if all is "
        "well, 78 otherwise.",
    )
    check_config.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"daemon configuration (default: {DEFAULT_CONFIG})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    match args.command:
        case None:
            # A newcomer's first try: show what there is to run.
            parser.print_help(sys.stderr)
            return EX_USAGE
        case "check":
            if args.rcpt is not None and args.config is None:
                parser.error("--rcpt needs --config")
            return checkcmd.run(args)
        case "run":
            return daemon.run(args.config.absolute())
        case "check-config":
            return _check_config(args.config.absolute())
    raise AssertionError(args.command)  # argparse allows only known commands


def _check_config(path: Path) -> int:
    try:
        configuration = load_all(path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EX_CONFIG
    rules = len(configuration.policy.domains)
    print(
        f"{path}: OK ({rules} domain rule{'' if rules == 1 else 's'} besides the"
        f" default, socket {configuration.daemon.socket.connection_string()})"
    )
    return 0
