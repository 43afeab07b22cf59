"""Read policy.yaml and policy.d/*.yaml into a Policy (see etc/policy.yaml).

spf_milter.config re-exports load_policy(). YAML comes as marked nodes from
spf_milter.config.yamlnodes; this module does not import ``yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

from spf_milter.action import (
    ActionKind,
    ConfiguredAction,
    DeferAction,
    QuarantineAction,
    RejectAction,
    ReplyTemplate,
    TextTemplate,
    default_action,
)
from spf_milter.config.fields import Fields, as_bool, as_choice, as_network, as_str
from spf_milter.config.problems import ConfigError, ConfigProblem, Context, Mark, quote
from spf_milter.config.yamlnodes import Node, YamlMap, read_yaml
from spf_milter.policy import (
    DEFAULT_RULE,
    DomainRule,
    Policy,
    ResultActions,
    normalise_domain_key,
    parse_domain_name,
)
from spf_milter.spf import SpfResult

POLICY_KEYS: Final = ("default", "domains")
RULE_KEYS: Final = ("helo", "mailfrom", "shadow", "trusted_relays")
DOMAIN_RULE_KEYS: Final = (*RULE_KEYS, "subdomains")
ACTION_KEYS: Final = ("action", "reason", "reply")
RESULT_KEYS: Final = tuple(str(result) for result in SpfResult)
POLICY_FILE_SUFFIXES: Final = (".yaml", ".yml")

# Which extra key each action takes in the {action: …} form.
_DETAIL_KEY: Final = {
    ActionKind.ACCEPT: None,
    ActionKind.REJECT: "reply",
    ActionKind.DEFER: "reply",
    ActionKind.QUARANTINE: "reason",
}


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a domain's rule is defined, for "already defined at" messages."""

    path: Path
    mark: Mark | None

    def __str__(self) -> str:
        if self.mark is None:
            return str(self.path)
        return f"{self.path}:{self.mark.line}:{self.mark.col}"


class _Rules:
    """The domain rules read so far, each with the place it came from."""

    def __init__(self) -> None:
        self.rules: dict[str, DomainRule] = {}
        self.places: dict[str, _Place] = {}

    def add(
        self, context: Context, mark: Mark | None, key: str, rule: DomainRule
    ) -> None:
        """Add the rule for ``key``, or report that it is already defined."""
        first = self.places.get(key)
        if first is not None:
            context.report(mark, f"domain {quote(key)} is already defined at {first}")
            return
        self.rules[key] = rule
        self.places[key] = _Place(context.path, mark)


_kind = as_choice(ActionKind, "action")


def _reply_action(kind: ActionKind, node: Node) -> ConfiguredAction:
    reply = ReplyTemplate.from_text(as_str(node))
    if kind is ActionKind.REJECT:
        return RejectAction(reply)
    return DeferAction(reply)


def _quarantine_action(node: Node) -> ConfiguredAction:
    return QuarantineAction(TextTemplate(as_str(node)))


def _word_action(
    result: SpfResult, base: ConfiguredAction, node: Node
) -> ConfiguredAction:
    """Read a bare action word; it keeps the base's reply if the kind matches."""
    kind = _kind(node)
    return base if base.kind is kind else default_action(kind, result)


def _mapping_action(
    spec: Fields, result: SpfResult, base: ConfiguredAction
) -> ConfiguredAction:
    """Read ``{action: reject, reply: "550 …"}`` or ``{action: quarantine, …}``."""
    if not spec.has("action"):
        spec.context.report(
            spec.mark, "missing key 'action' (accept, reject, defer or quarantine)"
        )
        return base
    kind = spec.get("action", _kind, None)
    if kind is None:
        return base
    detail = _DETAIL_KEY[kind]
    for key in ("reply", "reason"):
        if spec.has(key) and key != detail:
            spec.report(key, f"'{key}' does not apply to action '{kind}'")
    action = base if base.kind is kind else default_action(kind, result)
    if detail == "reply":
        return spec.get("reply", partial(_reply_action, kind), action)
    if detail == "reason":
        return spec.get("reason", _quarantine_action, action)
    return action


def _result_actions(fields: Fields, base: ResultActions) -> ResultActions:
    changes: dict[SpfResult, ConfiguredAction] = {}
    for result in SpfResult:
        key = str(result)
        node = fields.node(key)
        if node is None:
            continue
        if isinstance(node, YamlMap):
            changes[result] = _mapping_action(
                fields.sub(key, ACTION_KEYS), result, base[result]
            )
        else:
            parse = partial(_word_action, result, base[result])
            changes[result] = fields.get(key, parse, base[result])
    return base.replace(changes)


def _rule(fields: Fields, base: DomainRule) -> DomainRule:
    """Read a rule; every key it does not set comes from ``base``."""
    return DomainRule(
        helo=_result_actions(fields.sub("helo", RESULT_KEYS), base.helo),
        mailfrom=_result_actions(fields.sub("mailfrom", RESULT_KEYS), base.mailfrom),
        trusted_relays=fields.items("trusted_relays", as_network, base.trusted_relays),
        shadow=fields.get("shadow", as_bool, base.shadow),
    )


def _add_domain_rule(
    fields: Fields, mark: Mark | None, key: str, default: DomainRule, rules: _Rules
) -> None:
    """Read a domain's rule (and its ``subdomains`` switch) into ``rules``."""
    rule = _rule(fields, default)
    subdomains = fields.get("subdomains", as_bool, False)
    if subdomains and key.startswith("."):
        message = f"{quote(key)} already means subdomains only; drop the leading dot"
        fields.report("subdomains", message)
        subdomains = False
    rules.add(fields.context, mark, key, rule)
    if subdomains:
        rules.add(fields.context, mark, "." + key, rule)


def _read_domains(top: Fields, default: DomainRule, rules: _Rules) -> None:
    domains = top.sub("domains", None)
    for key in domains.names():
        mark = domains.key_mark(key)
        try:
            name = normalise_domain_key(key)
        except ValueError as exc:
            domains.context.at(key).report(mark, str(exc))
            continue
        _add_domain_rule(domains.sub(key, DOMAIN_RULE_KEYS), mark, name, default, rules)


def _is_policy_file(path: Path) -> bool:
    """Tell whether a policy.d entry is read: ``*.yaml``/``*.yml``, not hidden.

    Editor backups (``x.yaml~``, ``.#x.yaml``) and packaging leftovers
    (``x.yaml.dpkg-old``) are skipped.
    """
    return path.suffix in POLICY_FILE_SUFFIXES and not path.name.startswith(".")


def _read_domain_file(
    path: Path, default: DomainRule, rules: _Rules, problems: list[ConfigProblem]
) -> None:
    context = Context(path, problems)
    try:
        name = parse_domain_name(path.stem)
    except ValueError as exc:
        context.report(None, f"file name {quote(path.name)}: {exc}")
        return
    fields = Fields(context, read_yaml(context), DOMAIN_RULE_KEYS)
    _add_domain_rule(fields, None, name, default, rules)


def _read_policy_dir(
    policy_dir: Path, default: DomainRule, rules: _Rules, problems: list[ConfigProblem]
) -> None:
    if not policy_dir.exists():
        return  # a missing policy directory is fine: no per-domain files
    try:
        paths = sorted(path for path in policy_dir.iterdir() if _is_policy_file(path))
    except OSError as exc:
        Context(policy_dir, problems).report(
            None, f"cannot read directory: {exc.strerror}"
        )
        return
    for path in paths:
        _read_domain_file(path, default, rules, problems)


def read_policy(
    policy_file: Path, policy_dir: Path | None, problems: list[ConfigProblem]
) -> Policy:
    """Return the policy, appending every problem found to ``problems``."""
    context = Context(policy_file, problems)
    top = Fields(context, read_yaml(context), POLICY_KEYS)
    default = _rule(top.sub("default", RULE_KEYS), DEFAULT_RULE)
    rules = _Rules()
    _read_domains(top, default, rules)
    if policy_dir is not None:
        _read_policy_dir(policy_dir, default, rules, problems)
    return Policy(default, rules.rules)


def load_policy(policy_file: Path, policy_dir: Path | None) -> Policy:
    """Load the policy file and the per-domain files; raise ConfigError."""
    problems: list[ConfigProblem] = []
    policy = read_policy(policy_file, policy_dir, problems)
    if problems:
        raise ConfigError(problems)
    return policy
