"""Policy: rule lookup, combining the identities, shadow, relays, replies."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spf_milter.action import (
    Accept,
    AcceptAction,
    ActionKind,
    ConfiguredAction,
    Defer,
    DeferAction,
    Quarantine,
    QuarantineAction,
    Reject,
    RejectAction,
    ReplyTemplate,
    SmtpReply,
    TextTemplate,
    clean_text,
    default_action,
    milter_reply_text,
)
from spf_milter.policy import (
    DEFAULT_RULE,
    Decision,
    DomainRule,
    Facts,
    IPAddress,
    Policy,
    ResultActions,
    decide,
    normalise_domain_key,
    parse_domain_name,
)
from spf_milter.spf import CheckResult, Identity, SpfResult

ONE_PRINTABLE_LINE = re.compile(r"[\x20-\x7e]{1,400}")
CLIENT = ipaddress.ip_address("192.0.2.1")
FACTS = Facts(sender="alice@sender.example", helo="mx.sender.example")


def rule(
    helo: dict[SpfResult, ConfiguredAction] | None = None,
    mailfrom: dict[SpfResult, ConfiguredAction] | None = None,
    **options: object,
) -> DomainRule:
    """Return DEFAULT_RULE with some actions replaced."""
    return DomainRule(
        helo=DEFAULT_RULE.helo.replace(helo or {}),
        mailfrom=DEFAULT_RULE.mailfrom.replace(mailfrom or {}),
        **options,  # type: ignore[arg-type]
    )


def action(kind: ActionKind, result: SpfResult = SpfResult.FAIL) -> ConfiguredAction:
    return default_action(kind, result)


def check(
    result: SpfResult,
    domain: str = "sender.example",
    *,
    explanation: str | None = None,
    problem: str | None = None,
) -> CheckResult:
    return CheckResult(result, domain, explanation=explanation, problem=problem)


def run(
    policy: Policy,
    helo: CheckResult | None = None,
    mailfrom: CheckResult | None = None,
    *,
    recipient_domain: str = "example.org",
    client_ip: IPAddress = CLIENT,
    facts: Facts = FACTS,
) -> Decision:
    return decide(
        policy,
        recipient_domain=recipient_domain,
        client_ip=client_ip,
        helo=helo,
        mailfrom=mailfrom,
        facts=facts,
    )


# --- rule lookup -------------------------------------------------------------

LOOKUP_POLICY = Policy(
    default=DEFAULT_RULE,
    domains={
        "example.org": rule(shadow=True),
        ".example.org": rule(shadow=True),
        "deep.sub.example.org": rule(shadow=True),
        ".org": rule(shadow=True),
        "xn--bcher-kva.example": rule(shadow=True),
    },
)


@pytest.mark.parametrize(
    ("recipient_domain", "expected"),
    [
        pytest.param("example.org", "example.org", id="exact-match"),
        pytest.param("EXAMPLE.Org.", "example.org", id="case-and-trailing-dot"),
        pytest.param("lists.example.org", ".example.org", id="subdomain-rule"),
        pytest.param("a.b.example.org", ".example.org", id="deep-subdomain"),
        pytest.param("deep.sub.example.org", "deep.sub.example.org", id="longest"),
        pytest.param("x.deep.sub.example.org", ".example.org", id="exact-only"),
        pytest.param("example.net.org", ".org", id="shorter-suffix"),
        pytest.param("example.com", "default", id="no-match-default"),
        pytest.param("bücher.example", "xn--bcher-kva.example", id="idna-u-label"),
        pytest.param("XN--BCHER-KVA.example", "xn--bcher-kva.example", id="a-label"),
        pytest.param("", "default", id="empty-default"),
        pytest.param("[192.0.2.1]", "default", id="address-literal"),
        pytest.param("a..example.org", "default", id="empty-label"),
        pytest.param("\udcff.example.org", "default", id="surrogate-escape"),
    ],
)
def test_longest_matching_rule_wins(recipient_domain: str, expected: str) -> None:
    assert LOOKUP_POLICY.rule_for(recipient_domain).name == expected


@pytest.mark.parametrize(
    ("key", "normalised"),
    [
        pytest.param("Example.ORG.", "example.org", id="case-dot"),
        pytest.param(".Example.org", ".example.org", id="subdomain-key"),
        pytest.param("bücher.example", "xn--bcher-kva.example", id="idna"),
        pytest.param("localhost", "localhost", id="single-label"),
    ],
)
def test_domain_keys_are_normalised(key: str, normalised: str) -> None:
    assert normalise_domain_key(key) == normalised


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param(".", id="root"),
        pytest.param("..example.org", id="double-dot"),
        pytest.param("exa mple.org", id="space"),
        pytest.param("-example.org", id="leading-hyphen"),
        pytest.param("under_score.org", id="underscore"),
        pytest.param("a" * 64 + ".org", id="long-label"),
        pytest.param(".".join(["abcdefghi"] * 26), id="long-name"),
    ],
)
def test_bad_domain_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not a domain name"):
        normalise_domain_key(key)


def test_policy_refuses_unnormalised_keys() -> None:
    with pytest.raises(ValueError, match="not normalised"):
        Policy(domains={"Example.org": DEFAULT_RULE})


def test_result_actions_need_every_result() -> None:
    with pytest.raises(ValueError, match="no action for"):
        ResultActions({SpfResult.FAIL: AcceptAction()})


def test_domain_name_normalisation_keeps_a_labels() -> None:
    assert parse_domain_name("xn--bcher-kva.example.") == "xn--bcher-kva.example"


# --- combining the two identities -------------------------------------------

REJECT = action(ActionKind.REJECT)
DEFER = action(ActionKind.DEFER)
QUARANTINE = action(ActionKind.QUARANTINE)
ACCEPT = AcceptAction()
FAIL, PASS, SOFTFAIL = SpfResult.FAIL, SpfResult.PASS, SpfResult.SOFTFAIL


@pytest.mark.parametrize(
    ("helo_action", "mailfrom_action", "kind", "identity"),
    [
        pytest.param(ACCEPT, ACCEPT, ActionKind.ACCEPT, None, id="both-accept"),
        pytest.param(REJECT, ACCEPT, ActionKind.REJECT, Identity.HELO, id="helo-only"),
        pytest.param(REJECT, DEFER, ActionKind.REJECT, Identity.HELO, id="rej>defer"),
        pytest.param(
            QUARANTINE, DEFER, ActionKind.DEFER, Identity.MAILFROM, id="defer>quar"
        ),
        pytest.param(
            QUARANTINE, ACCEPT, ActionKind.QUARANTINE, Identity.HELO, id="quar>accept"
        ),
        pytest.param(REJECT, REJECT, ActionKind.REJECT, Identity.MAILFROM, id="tie"),
        pytest.param(DEFER, DEFER, ActionKind.DEFER, Identity.MAILFROM, id="tie-defer"),
    ],
)
def test_most_severe_action_wins(
    helo_action: ConfiguredAction,
    mailfrom_action: ConfiguredAction,
    kind: ActionKind,
    identity: Identity | None,
) -> None:
    policy = Policy(rule(helo={FAIL: helo_action}, mailfrom={FAIL: mailfrom_action}))
    decision = run(policy, check(FAIL, "helo.example"), check(FAIL, "from.example"))
    assert decision.action.kind is kind
    assert decision.identity is identity


def test_tie_uses_mailfrom_reply() -> None:
    policy = Policy(rule(helo={FAIL: REJECT}))
    decision = run(policy, check(FAIL, "helo.example"), check(FAIL, "from.example"))
    assert isinstance(decision.action, Reject)
    assert decision.action.reply.text == "SPF fail for from.example"


@pytest.mark.parametrize(
    ("helo", "mailfrom", "kind"),
    [
        pytest.param(None, None, ActionKind.ACCEPT, id="nothing-checked"),
        pytest.param(check(FAIL), None, ActionKind.ACCEPT, id="helo-fail-tagged"),
        pytest.param(None, check(FAIL), ActionKind.REJECT, id="mailfrom-fail-rejected"),
        pytest.param(None, check(SOFTFAIL), ActionKind.ACCEPT, id="softfail-tagged"),
        pytest.param(
            None, check(SpfResult.PERMERROR), ActionKind.ACCEPT, id="permerror-tagged"
        ),
        pytest.param(
            None, check(SpfResult.TEMPERROR), ActionKind.ACCEPT, id="temperror-tagged"
        ),
        pytest.param(check(FAIL), check(PASS), ActionKind.ACCEPT, id="helo-fail-pass"),
    ],
)
def test_default_policy_rejects_only_mailfrom_fail(
    helo: CheckResult | None, mailfrom: CheckResult | None, kind: ActionKind
) -> None:
    assert run(Policy(), helo, mailfrom).action.kind is kind


def test_default_fail_reply_quotes_the_explanation() -> None:
    explanation = "sender.example does not allow 192.0.2.1 to send"
    decision = run(Policy(), None, check(FAIL, explanation=explanation))
    assert decision.action == Reject(SmtpReply(550, "5.7.23", explanation))
    assert decision.rule == "default"


@pytest.mark.parametrize(
    ("kind", "result", "expected"),
    [
        pytest.param(
            ActionKind.REJECT,
            SpfResult.PERMERROR,
            "550 5.7.24 SPF permerror for sender.example: two records",
            id="reject-permerror",
        ),
        pytest.param(
            ActionKind.DEFER,
            SpfResult.TEMPERROR,
            "451 4.7.24 SPF temperror for sender.example: two records, try again later",
            id="defer-temperror",
        ),
        pytest.param(
            ActionKind.REJECT,
            SpfResult.SOFTFAIL,
            "550 5.7.1 SPF check of sender.example returned softfail",
            id="reject-softfail",
        ),
        pytest.param(
            ActionKind.DEFER,
            SpfResult.FAIL,
            "451 4.7.23 SPF fail for sender.example",
            id="defer-fail-no-exp",
        ),
    ],
)
def test_default_replies(kind: ActionKind, result: SpfResult, expected: str) -> None:
    policy = Policy(rule(mailfrom={result: default_action(kind, result)}))
    decision = run(policy, None, check(result, problem="two records"))
    assert isinstance(decision.action, Reject | Defer)
    assert str(decision.action.reply) == expected


def test_quarantine_reason_is_rendered() -> None:
    policy = Policy(rule(mailfrom={SOFTFAIL: action(ActionKind.QUARANTINE)}))
    decision = run(policy, None, check(SOFTFAIL))
    assert decision.action == Quarantine(
        "SPF mailfrom check of sender.example returned softfail"
    )


# --- trusted relays and shadow mode ------------------------------------------

RELAY_POLICY = Policy(
    domains={
        "example.org": rule(
            trusted_relays=(
                ipaddress.ip_network("198.51.100.0/24"),
                ipaddress.ip_network("2001:db8::/32"),
            )
        )
    }
)


@pytest.mark.parametrize(
    ("client_ip", "recipient_domain", "trusted"),
    [
        pytest.param("198.51.100.7", "example.org", True, id="ipv4-relay"),
        pytest.param("2001:db8::25", "example.org", True, id="ipv6-relay"),
        pytest.param("192.0.2.1", "example.org", False, id="other-client"),
        pytest.param("198.51.100.7", "example.com", False, id="other-domain"),
    ],
)
def test_trusted_relay_is_accepted(
    client_ip: str, recipient_domain: str, trusted: bool
) -> None:
    decision = run(
        RELAY_POLICY,
        check(FAIL),
        check(FAIL),
        recipient_domain=recipient_domain,
        client_ip=ipaddress.ip_address(client_ip),
    )
    assert decision.trusted_relay is trusted
    assert isinstance(decision.action, Accept) is trusted


def test_shadow_accepts_and_records_the_suppressed_action() -> None:
    policy = Policy(domains={".example.org": rule(shadow=True)})
    decision = run(policy, None, check(FAIL), recipient_domain="lists.example.org")
    assert decision.action == Accept()
    assert decision.shadowed
    assert isinstance(decision.suppressed, Reject)
    assert decision.identity is Identity.MAILFROM
    assert decision.rule == ".example.org"


def test_shadow_without_action_is_not_shadowed() -> None:
    decision = run(Policy(rule(shadow=True)), None, check(PASS))
    assert not decision.shadowed
    assert decision.identity is None


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"action": Accept(), "identity": Identity.HELO}, id="accept+id"),
        pytest.param(
            {"action": Reject(SmtpReply(550, "5.7.1", "x")), "identity": None},
            id="reject-no-id",
        ),
        pytest.param(
            {
                "action": Reject(SmtpReply(550, "5.7.1", "x")),
                "identity": Identity.HELO,
                "suppressed": Reject(SmtpReply(550, "5.7.1", "x")),
            },
            id="suppressed-but-not-accepted",
        ),
        pytest.param(
            {
                "action": Accept(),
                "identity": Identity.HELO,
                "trusted_relay": True,
                "suppressed": Quarantine("x"),
            },
            id="relay-with-action",
        ),
    ],
)
def test_inconsistent_decisions_are_unrepresentable(
    arguments: dict[str, object],
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- several messages
        Decision(rule="default", **arguments)  # type: ignore[arg-type]


# --- replies and templates ---------------------------------------------------

HOSTILE = [
    pytest.param("bad\r\n250 2.0.0 OK", id="crlf-injection"),
    pytest.param("100% %s %n %%", id="percent"),
    pytest.param("Gr\xfc\xdfe \u00e9\u4e2d", id="8-bit-and-unicode"),
    pytest.param("raw \udcff\udcfe bytes", id="surrogate-escapes"),
    pytest.param("x" * 10_000, id="10kB"),
    pytest.param("nul\x00tab\tdel\x7fesc\x1b[31m", id="controls"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_rendered_reply_is_one_printable_line(hostile: str) -> None:
    template = "550 5.7.1 ${sender} ${helo} ${explanation} ${problem} ${domain}"
    policy = Policy(
        rule(mailfrom={FAIL: RejectAction(ReplyTemplate.from_text(template))})
    )
    facts = Facts(sender=hostile, helo=hostile)
    decision = run(
        policy, None, check(FAIL, explanation=hostile, problem=hostile), facts=facts
    )
    assert isinstance(decision.action, Reject)
    text = decision.action.reply.text
    assert ONE_PRINTABLE_LINE.fullmatch(text)
    assert "\r" not in text
    assert "\n" not in text
    assert milter_reply_text(decision.action.reply).count("%") == 2 * text.count("%")


@settings(max_examples=200, deadline=None)
@given(explanation=st.text(), helo=st.text(), sender=st.text())
def test_any_untrusted_text_renders_to_one_printable_line(
    explanation: str, helo: str, sender: str
) -> None:
    template = ReplyTemplate.from_text("451 4.7.1 ${helo} ${sender} ${explanation}")
    policy = Policy(rule(mailfrom={FAIL: DeferAction(template)}))
    decision = run(
        policy, None, check(FAIL, explanation=explanation), facts=Facts(sender, helo)
    )
    assert isinstance(decision.action, Defer)
    assert ONE_PRINTABLE_LINE.fullmatch(decision.action.reply.text)


def test_empty_rendering_falls_back_to_the_result() -> None:
    template = ReplyTemplate.from_text("550 5.7.1 ${helo}")
    policy = Policy(rule(mailfrom={FAIL: RejectAction(template)}))
    decision = run(policy, None, check(FAIL), facts=Facts("", "\r\n"))
    assert isinstance(decision.action, Reject)
    assert decision.action.reply.text == "SPF fail"


def test_milter_reply_text_doubles_percent() -> None:
    reply = SmtpReply(550, "5.7.1", "100% sure, %s")
    assert milter_reply_text(reply) == "100%% sure, %%s"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a\r\nb", "a b", id="crlf"),
        pytest.param("  a \t\t b  ", "a b", id="spaces-collapse"),
        pytest.param("\xe9\udcff", "??", id="non-ascii"),
        pytest.param("y" * 20, "y" * 7 + "...", id="cut"),
    ],
)
def test_clean_text(text: str, expected: str) -> None:
    assert clean_text(text, 10) == expected


@pytest.mark.parametrize(
    ("code", "status", "text"),
    [
        pytest.param(550, "5.7.23", "x", id="5xx"),
        pytest.param(451, "4.7.24", "x", id="4xx"),
        pytest.param(554, "5.0.0", "~ printable !", id="printable"),
        pytest.param(421, "4.999.999", "x", id="three-digit-parts"),
    ],
)
def test_valid_smtp_replies(code: int, status: str, text: str) -> None:
    assert str(SmtpReply(code, status, text)) == f"{code} {status} {text}"


@pytest.mark.parametrize(
    ("code", "status", "text", "message"),
    [
        pytest.param(250, "2.0.0", "x", "not a 4xx or 5xx", id="2xx"),
        pytest.param(600, "5.0.0", "x", "not a 4xx or 5xx", id="600"),
        pytest.param(560, "5.0.0", "x", "not a 4xx or 5xx", id="second-digit"),
        pytest.param(550, "4.7.1", "x", "does not match", id="class-mismatch"),
        pytest.param(451, "5.7.1", "x", "does not match", id="class-mismatch-4"),
        pytest.param(550, "5.7", "x", "X.Y.Z", id="two-parts"),
        pytest.param(550, "5.07.1", "x", "X.Y.Z", id="leading-zero"),
        pytest.param(550, "5.7.1000", "x", "X.Y.Z", id="four-digits"),
        pytest.param(550, "5.7.1", "", "1 to 400", id="empty-text"),
        pytest.param(550, "5.7.1", "x" * 401, "1 to 400", id="long-text"),
        pytest.param(550, "5.7.1", "a\r\nb", "printable", id="crlf"),
        pytest.param(550, "5.7.1", "caf\xe9", "printable", id="8-bit"),
    ],
)
def test_invalid_smtp_replies(code: int, status: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmtpReply(code, status, text)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda: Reject(SmtpReply(451, "4.7.1", "x")), "5xx", id="reject-4xx"
        ),
        pytest.param(
            lambda: Defer(SmtpReply(550, "5.7.1", "x")), "4xx", id="defer-5xx"
        ),
        pytest.param(
            lambda: RejectAction(ReplyTemplate.from_text("451 4.7.1 x")),
            "must be 5xx",
            id="reject-action-4xx",
        ),
        pytest.param(
            lambda: DeferAction(ReplyTemplate.from_text("550 5.7.1 x")),
            "must be 4xx",
            id="defer-action-5xx",
        ),
    ],
)
def test_reply_class_must_fit_the_action(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param("${sendr}", "unknown placeholder '${sendr}'", id="unknown"),
        pytest.param("$sendr here", "unknown placeholder '${sendr}'", id="bare"),
        pytest.param("costs $5", "does not start a placeholder", id="dollar-digit"),
        pytest.param("${domain", "does not start a placeholder", id="unclosed"),
        pytest.param("Zur\xfcck", "not printable ASCII", id="non-ascii"),
        pytest.param("a\nb", "not printable ASCII", id="newline"),
        pytest.param("x" * 401, "longer than 400", id="too-long"),
    ],
)
def test_bad_templates_are_refused(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        TextTemplate(source)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("550", id="code-only"),
        pytest.param("550 5.7.1", id="no-text"),
        pytest.param("5.7.1 550 text", id="swapped"),
        pytest.param("", id="empty"),
    ],
)
def test_malformed_reply_templates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected '<code> <status> <text>'"):
        ReplyTemplate.from_text(text)


def test_dollar_dollar_is_a_literal_dollar() -> None:
    template = ReplyTemplate.from_text("550 5.7.1 pay $$5 for ${domain}")
    values = {"domain": "d.example", "result": "fail"}
    assert template.render(values).text == "pay $5 for d.example"


def test_quarantine_action_has_no_reply() -> None:
    assert default_action(ActionKind.QUARANTINE, FAIL) == QuarantineAction(
        TextTemplate("SPF ${identity} check of ${domain} returned ${result}")
    )
