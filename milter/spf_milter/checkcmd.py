"""``spf-milter check``: one SPF check from the command line, like spfquery.

Without ``--config`` it checks one identity and prints the result. With
``--config FILE --rcpt ADDRESS`` it does what the daemon would do for that
transaction: trusted networks, both identities, the recipient domain's
policy, and it prints the action, the exact SMTP reply and the header
fields, so that an administrator can try a policy change before reloading.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from spf_milter.config import EX_CONFIG, ConfigError, load_all
from spf_milter.dnsclient.resolver import DnsLookup
from spf_milter.outcome import (
    Envelope,
    decide_for,
    describe_action,
    header_fields,
    recipient_domain,
    reply_of,
)
from spf_milter.policy import in_networks
from spf_milter.service import make_settings
from spf_milter.settings import Settings
from spf_milter.spf import Identity, Limits, Lookup, Trace
from spf_milter.verify import (
    IdentityCheck,
    check_helo,
    check_mail_from,
    parse_mail_from,
)

# The policy is per recipient domain: without one there is nothing to apply.
NO_RCPT_NOTE = (
    "not applied: add --rcpt ADDRESS to see the rule, the action and the SMTP reply"
)


def run(args: argparse.Namespace) -> int:
    """Run the check the arguments ask for; print the result; return 0."""
    if args.config is not None:
        return _run_with_policy(args)
    lookup = DnsLookup(args.nameserver, timeout=args.timeout)
    limits = Limits(time_limit=args.time_limit)
    trace = Trace() if args.trace else None
    identity = Identity(args.identity)
    checked = asyncio.run(_check(lookup, limits, args, identity, trace))
    _print_trace(trace, args.json)
    print(json.dumps(as_json(checked)) if args.json else as_text(checked))
    return 0


async def _check(
    lookup: Lookup,
    limits: Limits,
    args: argparse.Namespace,
    identity: Identity,
    trace: Trace | None,
) -> IdentityCheck:
    common: dict[str, Any] = {
        "receiver": args.receiver,
        "limits": limits,
        "trace": trace,
    }
    if identity is Identity.HELO:
        return await check_helo(lookup, args.ip, args.helo, **common)
    sender = parse_mail_from(args.sender)
    return await check_mail_from(lookup, args.ip, sender, args.helo, **common)


def _print_trace(trace: Trace | None, to_stderr: bool) -> None:
    if trace is not None:
        print("\n".join(trace.render()), file=sys.stderr if to_stderr else sys.stdout)


def as_json(checked: IdentityCheck) -> dict[str, object]:
    """Return the stable JSON object of one identity's result."""
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


def as_text(checked: IdentityCheck) -> str:
    """Return one identity's result for people."""
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


# -- with the daemon's configuration and policy --------------------------------


def _run_with_policy(args: argparse.Namespace) -> int:
    try:
        configuration = load_all(args.config.absolute())
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EX_CONFIG
    lookup = None
    if args.nameserver:
        lookup = DnsLookup(args.nameserver, timeout=configuration.daemon.dns.timeout)
    settings = make_settings(configuration, lookup)
    trusted = in_networks(args.ip, settings.config.trusted_networks)
    if trusted:
        report: dict[str, Any] = {"trusted": True, "action": "accept", "headers": []}
    else:
        trace = Trace() if args.trace else None
        helo, mailfrom = asyncio.run(_both(settings, args, trace))
        _print_trace(trace, args.json)
        report = _policy_report(settings, args, helo, mailfrom)
    if args.json:
        print(json.dumps(report))
    else:
        print(_policy_text(report))
    return 0


async def _both(
    settings: Settings, args: argparse.Namespace, trace: Trace | None
) -> tuple[IdentityCheck, IdentityCheck]:
    receiver = settings.config.headers.receiver
    common: dict[str, Any] = {"receiver": receiver, "limits": settings.limits}
    helo = await check_helo(settings.lookup, args.ip, args.helo, **common)
    sender = parse_mail_from(args.sender)
    mailfrom = await check_mail_from(
        settings.lookup, args.ip, sender, args.helo, trace=trace, **common
    )
    return helo, mailfrom


def _policy_report(
    settings: Settings,
    args: argparse.Namespace,
    helo: IdentityCheck,
    mailfrom: IdentityCheck,
) -> dict[str, Any]:
    envelope = Envelope(args.ip, args.helo, parse_mail_from(args.sender))
    report: dict[str, Any] = {
        "trusted": False,
        "helo": as_json(helo),
        "mailfrom": as_json(mailfrom),
    }
    if args.rcpt is not None:
        decision = decide_for(settings.policy, envelope, args.rcpt, helo, mailfrom)
        report |= {
            "rcpt_domain": recipient_domain(args.rcpt),
            "rule": decision.rule,
            "action": describe_action(decision, dry_run=settings.config.dry_run),
            "reply": reply_of(decision),
        }
    config = settings.config
    fields = header_fields(config.headers, config.authserv_id, envelope, helo, mailfrom)
    report["headers"] = [f"{name}: {value}" for name, value in fields]
    return report


def _policy_text(report: dict[str, Any]) -> str:
    if report["trusted"]:
        return "client is in trusted_networks: not checked, no header fields added"
    lines = [
        _identity_line("helo", report["helo"]["domain"], report["helo"]),
        _identity_line("mailfrom", report["mailfrom"]["sender"], report["mailfrom"]),
    ]
    if "action" in report:
        lines.append(f"policy    rule {report['rule']!r} for {report['rcpt_domain']!r}")
        lines.append(f"action    {report['action']}")
        if report["reply"]:
            lines.append(f"reply     {report['reply']}")
    else:
        lines.append(f"policy    {NO_RCPT_NOTE}")
    lines.extend(f"header    {field}" for field in report["headers"])
    return "\n".join(lines)


def _identity_line(identity: str, label: str, checked: dict[str, Any]) -> str:
    """Return ``helo      'name': result (why)``; the HELO is labelled by its name."""
    line = f"{identity:<9} {label!r}: {checked['result']}"
    why = checked["problem"] or checked["mechanism"]
    return f"{line} ({why})" if why else line
