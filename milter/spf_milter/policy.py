"""Decide, per recipient domain, what the SPF results of a transaction earn.

A Policy maps recipient domains to DomainRules; a rule maps each identity's
SPF result to a configured action; decide() picks the most severe action of
the two identities and renders it (spf_milter.action). Pure: imports the
standard library, spf_milter.spf and spf_milter.action only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from spf_milter.action import (
    MAX_VALUE_TEXT,
    SEVERITY,
    Accept,
    AcceptAction,
    Action,
    ActionKind,
    ConfiguredAction,
    Defer,
    Quarantine,
    Reject,
    clean_text,
    default_action,
    render_action,
)
from spf_milter.spf import CheckResult, Identity, SpfResult
from spf_milter.spf.address import IPAddress as IPAddress  # config.py uses it

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_DOMAIN_NAME: Final = 253  # RFC 1035 §2.3.4, without the trailing dot

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True, slots=True)
class ResultActions:
    """The configured action for each of the seven SPF results of one identity."""

    actions: Mapping[SpfResult, ConfiguredAction]

    def __post_init__(self) -> None:
        missing = [str(result) for result in SpfResult if result not in self.actions]
        if missing:
            raise ValueError(f"no action for {', '.join(missing)}")
        object.__setattr__(self, "actions", MappingProxyType(dict(self.actions)))

    def __getitem__(self, result: SpfResult) -> ConfiguredAction:
        return self.actions[result]

    def replace(self, changes: Mapping[SpfResult, ConfiguredAction]) -> ResultActions:
        """Return a copy with ``changes`` applied on top."""
        return ResultActions({**self.actions, **changes})


@dataclass(frozen=True, slots=True)
class DomainRule:
    """What to do for one recipient domain (or for all, as the default).

    Mail from a ``trusted_relays`` client (a forwarder or backup MX of the
    recipient domain) is not judged by the original sender's SPF: every
    action becomes accept. In ``shadow`` mode the rule only logs what it
    would have done.
    """

    helo: ResultActions
    mailfrom: ResultActions
    trusted_relays: tuple[IPNetwork, ...] = ()
    shadow: bool = False

    def actions_for(self, identity: Identity) -> ResultActions:
        """Return the result → action map of ``identity``."""
        return self.helo if identity is Identity.HELO else self.mailfrom

    def is_trusted_relay(self, client_ip: IPAddress) -> bool:
        """Tell whether ``client_ip`` is one of the trusted relays."""
        return in_networks(client_ip, self.trusted_relays)


def in_networks(client_ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    """Tell whether ``client_ip`` is in one of ``networks``.

    The client address comes normalised (IPv4-mapped as IPv4, spf.address),
    as the flow makes it once at connect.
    """
    return any(client_ip in network for network in networks)


def _accept_all() -> ResultActions:
    return ResultActions(dict.fromkeys(SpfResult, AcceptAction()))


# Safe for a new install: tag everything, reject only a MAIL FROM fail.
DEFAULT_RULE: Final = DomainRule(
    helo=_accept_all(),
    mailfrom=_accept_all().replace(
        {SpfResult.FAIL: default_action(ActionKind.REJECT, SpfResult.FAIL)}
    ),
)


def parse_domain_name(name: str) -> str:
    """Return ``name`` in lower case, without a trailing dot, as A-labels.

    Raise ValueError saying what is wrong if it is not a domain name: a
    policy key must be one. (spf.Memo.normalise_domain answers None
    instead, for RFC 7208 §4.3.) IDNA conversion is Python's (IDNA 2003),
    the only one in the stdlib.
    """
    text = name.removesuffix(".")
    if not text:
        raise ValueError("not a domain name: it is empty")
    try:
        # An ASCII name is its own A-label form: the label checks below are
        # the ones the codec would make, and the codec is slow.
        ascii_name = (
            text if text.isascii() else text.encode("idna").decode("ascii")
        ).lower()
    except UnicodeError as exc:
        raise ValueError(f"not a domain name: {exc}") from None
    if len(ascii_name) > MAX_DOMAIN_NAME:
        raise ValueError(f"not a domain name: over {MAX_DOMAIN_NAME} characters")
    for label in ascii_name.split("."):
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"not a domain name: label {label!r} must be 1 to 63 letters,"
                " digits or hyphens, and not start or end with a hyphen"
            )
    return ascii_name


def normalise_domain_key(key: str) -> str:
    """Normalise a rule key: ``example.org`` or ``.example.org`` (subdomains)."""
    if key.startswith("."):
        return "." + parse_domain_name(key[1:])
    return parse_domain_name(key)


@dataclass(frozen=True, slots=True)
class MatchedRule:
    """The rule chosen for a recipient domain, and its key for the logs."""

    name: str
    rule: DomainRule


@dataclass(frozen=True, slots=True)
class Policy:
    """The default rule and the per-domain rules, keyed by normalised key."""

    default: DomainRule = DEFAULT_RULE
    domains: Mapping[str, DomainRule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in self.domains:
            if normalise_domain_key(key) != key:
                raise ValueError(f"domain key '{key}' is not normalised")
        object.__setattr__(self, "domains", MappingProxyType(dict(self.domains)))

    def rule_for(self, recipient_domain: str) -> MatchedRule:
        """Return the longest matching rule: exact name, then ``.parent`` keys."""
        if not self.domains:
            return MatchedRule("default", self.default)
        try:
            domain = parse_domain_name(recipient_domain)
        except ValueError:
            return MatchedRule("default", self.default)
        labels = domain.split(".")
        keys = [domain] + ["." + ".".join(labels[i:]) for i in range(1, len(labels))]
        for key in keys:
            rule = self.domains.get(key)
            if rule is not None:
                return MatchedRule(key, rule)
        return MatchedRule("default", self.default)


@dataclass(frozen=True, slots=True)
class Facts:
    """What the reply templates may quote besides the SPF results (untrusted)."""

    sender: str  # the MAIL FROM address; "" for the null sender
    helo: str  # the HELO/EHLO name as the client gave it


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of decide(), with what the logs need to explain it.

    ``identity`` drove the action (None when everything was accepted);
    ``rule`` is the matched key (``default``, ``example.org``,
    ``.example.org``); ``suppressed`` is the action shadow mode turned into
    an accept.
    """

    action: Action
    identity: Identity | None
    rule: str
    trusted_relay: bool = False
    suppressed: Reject | Defer | Quarantine | None = None

    def __post_init__(self) -> None:
        if self.suppressed is not None and not isinstance(self.action, Accept):
            raise ValueError("only an accept can suppress another action")
        quiet = isinstance(self.action, Accept) and self.suppressed is None
        if (self.identity is None) != quiet:
            raise ValueError("identity must be set exactly when something was done")
        if self.trusted_relay and not quiet:
            raise ValueError("a trusted relay is always accepted")

    @property
    def shadowed(self) -> bool:
        """Tell whether shadow mode turned an action into an accept."""
        return self.suppressed is not None


@dataclass(frozen=True, slots=True)
class _Candidate:
    identity: Identity
    check: CheckResult
    action: ConfiguredAction


def _most_severe(
    rule: DomainRule, checks: Mapping[Identity, CheckResult | None]
) -> _Candidate | None:
    best: _Candidate | None = None
    for identity in (Identity.HELO, Identity.MAILFROM):  # MAIL FROM last: wins ties
        check = checks[identity]
        if check is None:
            continue
        action = rule.actions_for(identity)[check.result]
        if action.kind is ActionKind.ACCEPT:
            continue
        if best is None or SEVERITY[action.kind] >= SEVERITY[best.action.kind]:
            best = _Candidate(identity, check, action)
    return best


def template_values(
    identity: Identity, check: CheckResult, client_ip: IPAddress, facts: Facts
) -> dict[str, str]:
    """Return every placeholder's value, each cleaned to short printable ASCII."""
    raw = {
        "sender": facts.sender or "<>",
        "client_ip": str(client_ip),
        "helo": facts.helo,
        "domain": check.domain,
        "result": str(check.result),
        "identity": str(identity),
        "explanation": check.explanation or f"SPF {check.result} for {check.domain}",
        "problem": check.problem or "no details",
    }
    return {name: clean_text(value, MAX_VALUE_TEXT) for name, value in raw.items()}


def decide(
    policy: Policy,
    *,
    recipient_domain: str,
    client_ip: IPAddress,
    helo: CheckResult | None,
    mailfrom: CheckResult | None,
    facts: Facts,
) -> Decision:
    """Return what to do with a transaction for one recipient domain.

    The most severe action of the two identities wins (reject > defer >
    quarantine > accept); on a tie MAIL FROM's reply is used. An identity
    that was not checked (None) counts as accept.
    """
    matched = policy.rule_for(recipient_domain)
    rule = matched.rule
    if rule.is_trusted_relay(client_ip):
        return Decision(Accept(), None, matched.name, trusted_relay=True)
    best = _most_severe(rule, {Identity.HELO: helo, Identity.MAILFROM: mailfrom})
    if best is None:
        return Decision(Accept(), None, matched.name)
    values = template_values(best.identity, best.check, client_ip, facts)
    action = render_action(best.action, values)
    if rule.shadow and not isinstance(action, Accept):
        return Decision(Accept(), best.identity, matched.name, suppressed=action)
    return Decision(action, best.identity, matched.name)
