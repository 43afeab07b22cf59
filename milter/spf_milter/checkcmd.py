"""``spf-milter check``: one SPF check from the command line, like spfquery.

Without ``--config`` it checks one identity and prints the result. With
``--config FILE --rcpt ADDRESS`` it drives the daemon's own transaction
flow (flow.py) through that transaction: trusted networks, both identities
(the null sender sharing the HELO check), the recipient domain's policy,
and it prints the action, the exact SMTP reply and the header fields, so
that an administrator can try a policy change before reloading.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from spf_milter.config import EX_CONFIG, ConfigError, load_all
from spf_milter.dnsclient.resolver import DnsLookup
from spf_milter.eventloop import EventLoop
from spf_milter.flow import Flow
from spf_milter.metrics import Metrics
from spf_milter.outcome import describe_action, reply_of
from spf_milter.runner import CheckRunner
from spf_milter.service import make_cache, make_settings
from spf_milter.session import Skip
from spf_milter.spf import Identity, Limits, Lookup, Memo, Trace
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
        "memo": Memo(),  # this run's: a record met twice is parsed once
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
    cache = make_cache(configuration.daemon.dns)
    settings = make_settings(configuration, lookup, cache)
    loop = EventLoop("spf-check")
    loop.start()
    try:
        runner = CheckRunner(loop)
        client = (args.ip, "")
        flow = Flow(settings, runner, Metrics(), 0, client, tracing=args.trace)
        report = _transaction(flow, args)
        flow.close()
    finally:
        loop.stop()
    if args.json:
        print(json.dumps(report))
    else:
        print(_policy_text(report))
    return 0


def _transaction(flow: Flow, args: argparse.Namespace) -> dict[str, Any]:
    """Drive ``flow`` through one transaction, as the daemon does; report it."""
    if flow.conn.skip is Skip.TRUSTED:
        return {"trusted": True, "action": "accept", "headers": []}
    flow.hello(args.helo)
    flow.mail_from(args.sender)
    report: dict[str, Any] = {"trusted": False}
    if args.rcpt is not None:
        flow.recipient(args.rcpt)
        report |= _decision_report(flow, args.rcpt)
    helo, mailfrom = flow.checks()
    if helo is None or mailfrom is None:
        raise RuntimeError("the flow checked no identity")
    _print_traces(helo, mailfrom, args.json)
    edits = flow.end_of_message()
    flow.end_transaction()
    return {
        **report,
        "helo": as_json(helo),
        "mailfrom": as_json(mailfrom),
        "headers": [str(field) for field in edits.add],
    }


def _decision_report(flow: Flow, rcpt: str) -> dict[str, Any]:
    transaction = flow.conn.transaction
    if transaction is None or not transaction.decisions:
        raise RuntimeError("the flow made no decision")
    entry = transaction.decisions[-1]
    decision = entry.decision
    return {
        "rcpt_domain": entry.domain,
        "rule": decision.rule,
        "action": describe_action(decision, dry_run=flow.conn.settings.config.dry_run),
        "reply": reply_of(decision),
    }


def _print_traces(
    helo: IdentityCheck, mailfrom: IdentityCheck, to_stderr: bool
) -> None:
    """Print the trace of both checks; the null sender's is the HELO check's."""
    if helo.trace is None:
        return
    out = sys.stderr if to_stderr else sys.stdout
    print(f"helo check of {helo.sender!r}:", file=out)
    _print_trace(helo.trace, to_stderr)
    if mailfrom.trace is helo.trace:
        print("mailfrom check: the null sender's, the HELO check above", file=out)
        return
    print(f"mailfrom check of {mailfrom.sender!r}:", file=out)
    _print_trace(mailfrom.trace, to_stderr)


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
