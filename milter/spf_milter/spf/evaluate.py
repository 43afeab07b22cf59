"""check_host() (RFC 7208 §4): evaluate a domain's SPF record for a client.

One ``_Check`` object lives for one call of check_host() and holds what the
RFC's limits count (§4.6.4): DNS-querying terms and void lookups across the
whole evaluation, includes and redirects included. Mechanisms (§5) are one
small coroutine each; PermError and TempError are raised where a problem is
found and turned into a result only in check_host().
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

from spf_milter.spf.address import IPAddress, unmapped
from spf_milter.spf.eager import gather_eagerly, run_eagerly
from spf_milter.spf.errors import PermError, SpfError, TempError
from spf_milter.spf.explain import fetch_explanation, sanitise_explanation
from spf_milter.spf.limits import DEFAULT_LIMITS, Limits
from spf_milter.spf.lookup import DnsAnswerTooLarge, DnsError, Lookup, Prefetch
from spf_milter.spf.macro import (
    MacroContext,
    MacroString,
    expand_domain,
    expand_head,
    truncate_domain,
)
from spf_milter.spf.memo import Memo
from spf_milter.spf.names import client_macros, query_name
from spf_milter.spf.record import (
    A,
    All,
    Directive,
    Exists,
    Include,
    IpNetwork,
    Mechanism,
    Mx,
    Ptr,
    Qualifier,
    Record,
    is_spf_record,
)
from spf_milter.spf.result import CheckResult, SpfResult
from spf_milter.spf.trace import Trace, TracedLookup, printable

T = TypeVar("T")
Fetch = Callable[[str], Coroutine[Any, Any, Sequence[object]]]
FetchAddresses = Callable[[str], Coroutine[Any, Any, Sequence[IPAddress]]]

_MASKS4: Final = tuple(((1 << n) - 1) << (32 - n) for n in range(33))
_MASKS6: Final = tuple(((1 << n) - 1) << (128 - n) for n in range(129))

# How much of an explanation is expanded, in multiples of the length kept:
# what sanitising strips (leading spaces) must not leave it empty too soon.
_EXPANDED_EXPLANATION: Final = 4

RESULT_OF: Final = {
    Qualifier.PASS: SpfResult.PASS,
    Qualifier.FAIL: SpfResult.FAIL,
    Qualifier.SOFTFAIL: SpfResult.SOFTFAIL,
    Qualifier.NEUTRAL: SpfResult.NEUTRAL,
}


def dns_failure(error: DnsError) -> SpfError:
    """Return what a failed query makes of the check (§2.6.6, §4.6.4).

    A temperror, unless the answer was refused for its size: the zone
    publishes it that way, so asking again would give the same.
    """
    if isinstance(error, DnsAnswerTooLarge):
        return PermError(str(error))
    return TempError(str(error))


class _Outcome:
    """What one record's evaluation came to; internal, made once per level.

    A plain slotted class rather than a frozen dataclass: it is built on
    every check, and a frozen dataclass's __init__ costs several times more.
    """

    __slots__ = ("explanation", "mechanism", "result")

    def __init__(
        self,
        result: SpfResult,
        mechanism: str | None = None,
        explanation: str | None = None,
    ) -> None:
        self.result = result
        self.mechanism = mechanism
        self.explanation = explanation


async def check_host(
    lookup: Lookup,
    ip: IPAddress,
    domain: str,
    sender: str,
    *,
    helo: str = "",
    receiver: str = "unknown",
    limits: Limits = DEFAULT_LIMITS,
    trace: Trace | None = None,
    clock: Callable[[], float] = time.time,
    prefetch: Prefetch | None = None,
    memo: Memo | None = None,
) -> CheckResult:
    """Return the SPF result of ``domain`` for a message from ``ip`` (§4).

    ``sender`` is the <sender> of §4.1 ("local-part@domain"; a missing local
    part is "postmaster"), ``helo`` the HELO/EHLO name for the %{h} macro.
    Never raises for anything the DNS or the record holds. ``prefetch``,
    outside the RFC, may warm ``lookup``'s cache (see _Check.prefetch); a
    traced check never prefetches, so that its trace reads in RFC order.
    ``memo`` keeps parsed records, explanations and names for the next
    checks (memo.py); without one, each is parsed every time.
    """
    if trace is not None:
        lookup = TracedLookup(lookup, trace)
        prefetch = None
    if memo is None:
        memo = Memo.keeping_nothing()
    check = _Check(
        lookup, ip, sender, helo, receiver, limits, trace, clock, prefetch, memo
    )
    try:
        outcome = await run_eagerly(
            check.evaluate(domain, explain=True), limits.time_limit
        )
    except TimeoutError:
        problem = f"no result within the time limit of {limits.time_limit:g} s"
        return check.result(domain, _Outcome(SpfResult.TEMPERROR), problem)
    except PermError as error:
        return check.result(domain, _Outcome(SpfResult.PERMERROR), error.problem)
    except TempError as error:
        return check.result(domain, _Outcome(SpfResult.TEMPERROR), error.problem)
    return check.result(domain, outcome, None)


class _Check:
    """The state of one check_host() call: inputs, counters, trace."""

    __slots__ = (
        "_context",
        "clock",
        "dns_terms",
        "fetch_address",
        "helo",
        "ip",
        "ip_int",
        "is_v4",
        "limits",
        "lookup",
        "memo",
        "prefetched",
        "prefetcher",
        "receiver",
        "records",
        "sender",
        "trace",
        "void_lookups",
    )

    def __init__(
        self,
        lookup: Lookup,
        ip: IPAddress,
        sender: str,
        helo: str,
        receiver: str,
        limits: Limits,
        trace: Trace | None,
        clock: Callable[[], float],
        prefetcher: Prefetch | None,
        memo: Memo,
    ) -> None:
        if isinstance(ip, ipaddress.IPv6Address):
            ip = unmapped(ip)  # §5: an IPv4-mapped client is matched as IPv4
        self.lookup = lookup
        self.ip = ip
        self.ip_int = int(ip)
        self.is_v4 = ip.version == 4
        # A or AAAA: the address records of the client's family (§5.3, §5.4).
        self.fetch_address: FetchAddresses = lookup.a if self.is_v4 else lookup.aaaa
        self.limits = limits
        self.trace = trace
        self.clock = clock
        self.dns_terms = 0
        self.void_lookups = 0
        self.records = 0
        self.prefetched = 0
        self.prefetcher = prefetcher
        self.memo = memo
        self.sender = sender
        self.helo = helo
        self.receiver = receiver
        self._context: MacroContext | None = None

    @property
    def context(self) -> MacroContext:
        """Return the macro values of this check, built on first use."""
        if self._context is None:
            self._context = client_macros(
                self.ip, self.sender, self.helo, self.receiver
            )
        return self._context

    def result(
        self, domain: str, outcome: _Outcome, problem: str | None
    ) -> CheckResult:
        if self.trace is not None:
            reason = f" ({problem})" if problem else ""
            self.trace.note(f"result: {outcome.result}{reason}")
        return CheckResult(
            result=outcome.result,
            domain=domain,
            mechanism=outcome.mechanism,
            explanation=outcome.explanation,
            problem=problem,
            lookups=self.dns_terms,
            void_lookups=self.void_lookups,
        )

    def note(self, text: str) -> None:
        if self.trace is not None:
            self.trace.note(text)

    # -- check_host() proper (§4.3 - §4.7) ------------------------------------

    async def evaluate(self, domain: str, *, explain: bool) -> _Outcome:
        """Evaluate ``domain``'s record; NONE when it has none (§4.3, §4.5)."""
        name = self.memo.normalise_domain(domain)
        if name is None:
            self.note(f"{printable(domain)} is not a valid domain: none")
            return _Outcome(SpfResult.NONE)
        record = await self.find_record(name)
        if record is None:
            return _Outcome(SpfResult.NONE)
        ip_int, version = self.ip_int, self.ip.version
        for directive in record.directives:
            # ip4, ip6 and all need no DNS: test them inline, they are most terms.
            mechanism = directive.mechanism
            if isinstance(mechanism, IpNetwork):
                hit = (
                    mechanism.version == version
                    and ip_int & mechanism.mask == mechanism.network
                )
            else:
                hit = isinstance(mechanism, All) or await self.matches(mechanism, name)
            if hit:
                outcome = self.matched(directive)
                if explain and outcome.result is SpfResult.FAIL:
                    explanation = await self.explain(record.explanation, name)
                    return _Outcome(outcome.result, outcome.mechanism, explanation)
                return outcome
            if self.trace is not None:
                self.trace.note(f"{directive.text}: no match")
        if record.redirect is not None and not record.has_all:
            return await self.redirect(record.redirect, name, explain=explain)
        self.note("no mechanism matched: neutral (§4.7)")
        return _Outcome(SpfResult.NEUTRAL, "default")

    async def find_record(self, name: str) -> Record | None:
        """Return ``name``'s one SPF record, None if it has none (§4.4, §4.5)."""
        waited = False
        try:  # name was normalised: queryable
            if self.prefetcher is not None:
                texts, waited = await self.prefetcher.fetch(self.lookup.txt(name))
            else:
                texts = await self.lookup.txt(name)
        except DnsError as error:
            raise dns_failure(error) from None
        self.count_records(len(texts))
        select_record = self.memo.records  # a local: see memo.Memo
        record = select_record(tuple(texts))
        if self.trace is not None:
            self.trace_record(name, texts)
        if isinstance(record, PermError):
            raise PermError(f"{name}: {record.problem}")
        if waited and record is not None:
            self.prefetch(record, name)
        return record

    def prefetch(self, record: Record, name: str) -> None:
        """Start the first query of the record's DNS-querying terms now.

        A record that had to come from the DNS names targets that are most
        likely not cached either; evaluated in order, each term would wait
        for the one before. Started together, they cost one round trip.
        This only warms the Lookup's shared cache: every term is still
        evaluated in order, queried, and counted as §4.6.4 says, so the
        result, the mechanism and the counts stay as without it. Bounded:
        no more terms than the check may still evaluate, no more than
        max_dns_terms prefetches per check, no more than the prefetcher
        lets wait at once; no %{p} targets (they need PTR lookups) and no
        ptr mechanisms.
        """
        prefetcher = self.prefetcher
        if prefetcher is None:
            return
        queries = self.first_queries(record)
        budget = self.limits.max_dns_terms - max(self.dns_terms, self.prefetched)
        for fetch, spec in queries[: max(budget, 0)]:
            if fetch is None:
                continue
            target = name if spec is None else self.target_now(spec, name)
            if target is None or not self.memo.is_queryable(target):
                continue
            if not prefetcher.start(fetch(target)):
                return  # too many prefetches wait already: evaluate as usual
            self.prefetched += 1

    def first_queries(
        self, record: Record
    ) -> list[tuple[Fetch | None, MacroString | None]]:
        """Return each DNS-querying term's first query and its domain-spec.

        In evaluation order, up to ``all``, redirect last; None for ptr (not
        prefetched).
        """
        lookup = self.lookup
        queries: list[tuple[Fetch | None, MacroString | None]] = []
        for directive in record.directives:
            match directive.mechanism:
                case Include(domain):
                    queries.append((lookup.txt, domain))
                case Mx(domain):
                    queries.append((lookup.mx, domain))
                case Exists(domain):
                    queries.append((lookup.a, domain))
                case A(domain):
                    queries.append((self.fetch_address, domain))
                case Ptr():
                    queries.append((None, None))
                case All():
                    return queries  # it always matches: nothing after it runs
        if record.redirect is not None:
            queries.append((lookup.txt, record.redirect))
        return queries

    def trace_record(self, name: str, texts: list[bytes]) -> None:
        records = [text for text in texts if is_spf_record(text)]
        if len(records) == 1:
            self.note(f"{name}: record {printable(records[0])}")
        elif not records:
            self.note(f"{name}: no SPF record")

    def matched(self, directive: Directive) -> _Outcome:
        result = RESULT_OF[directive.qualifier]
        if self.trace is not None:
            self.trace.note(f"{directive.text}: match, {result}")
        return _Outcome(result, directive.text)

    async def redirect(
        self, target: MacroString, name: str, *, explain: bool
    ) -> _Outcome:
        """Follow ``redirect=`` (§6.1); the target's exp= applies, not ours."""
        self.count_dns_term()
        domain = await self.target(target, name)
        self.note(f"redirect={domain}")
        outcome = await self.nested(domain, explain=explain)
        if outcome.result is SpfResult.NONE:
            raise PermError(f"redirect target {domain} has no SPF record")
        return outcome

    async def nested(self, domain: str, *, explain: bool) -> _Outcome:
        if self.trace is None:
            return await self.evaluate(domain, explain=explain)
        self.trace.depth += 1
        try:
            return await self.evaluate(domain, explain=explain)
        finally:
            self.trace.depth -= 1

    # -- mechanisms (§5) ------------------------------------------------------

    async def matches(self, mechanism: Mechanism, name: str) -> bool:
        """Evaluate a mechanism that needs DNS (§5.2 - §5.5, §5.7)."""
        match mechanism:
            case A(domain, cidr4, cidr6):
                return await self.match_a(domain, name, cidr4, cidr6)
            case Mx(domain, cidr4, cidr6):
                return await self.match_mx(domain, name, cidr4, cidr6)
            case Include(domain):
                return await self.match_include(domain, name)
            case Exists(domain):
                return await self.match_exists(domain, name)
            case Ptr(domain):
                return await self.match_ptr(domain, name)
        raise AssertionError(mechanism)  # ip4, ip6 and all are matched inline

    async def match_include(self, spec: MacroString, name: str) -> bool:
        """Map the target's result onto match / no match / error (§5.2)."""
        self.count_dns_term()
        domain = await self.target(spec, name)
        if self.trace is not None:
            self.trace.note(f"include:{domain}")
        outcome = await self.nested(domain, explain=False)
        match outcome.result:
            case SpfResult.PASS:
                return True
            case SpfResult.FAIL | SpfResult.SOFTFAIL | SpfResult.NEUTRAL:
                return False
            case SpfResult.NONE:
                raise PermError(f"include target {domain} has no SPF record")
        raise AssertionError(outcome.result)  # temperror/permerror were raised

    async def match_a(
        self, spec: MacroString | None, name: str, cidr4: int, cidr6: int
    ) -> bool:
        self.count_dns_term()
        domain = name if spec is None else await self.target(spec, name)
        addresses = await self.addresses(domain)
        if not addresses:
            self.count_void(domain)
        return self.any_in_network(addresses, cidr4, cidr6)

    async def match_mx(
        self, spec: MacroString | None, name: str, cidr4: int, cidr6: int
    ) -> bool:
        self.count_dns_term()
        domain = name if spec is None else await self.target(spec, name)
        exchanges = await self.query(self.lookup.mx, domain)
        if not exchanges:
            self.count_void(domain)
            return False
        if len(exchanges) > self.limits.max_mx_names:
            # §4.6.4: more than 10 MX names is a permerror, not a truncation.
            raise PermError(f"{domain} has {len(exchanges)} MX records, more than 10")
        # RFC 7505: a null MX ("." as the exchange) has no addresses.
        memo = self.memo
        hosts = [host for host in exchanges if memo.is_queryable(host)]
        fetch = self.fetch_address
        # The hosts' addresses are independent: ask for them all at once, then
        # read the answers in order, as a left-to-right evaluation would.
        answers: list[Sequence[IPAddress] | DnsError]
        answers = await gather_eagerly([fetch(host) for host in hosts], DnsError)
        for answer in answers:
            if isinstance(answer, DnsError):
                raise dns_failure(answer)
            self.count_records(len(answer))
            if self.any_in_network(answer, cidr4, cidr6):
                return True
        return False

    async def match_ptr(self, spec: MacroString | None, name: str) -> bool:
        """Match validated PTR names at or under the target (§5.5)."""
        self.count_dns_term()
        domain = name if spec is None else await self.target(spec, name)
        names = await self.ptr_names()
        if names is None:
            return False  # §5.5: a PTR lookup error means no match
        if not names:
            self.count_void(self.ip.reverse_pointer)
        suffix = "." + domain.lower()
        candidates = [n for n in names if n.lower() == domain.lower()]
        candidates += [n for n in names if n.lower().endswith(suffix)]
        for candidate in candidates:
            if await self.is_validated(candidate):
                return True
        return False

    async def match_exists(self, spec: MacroString, name: str) -> bool:
        """Match when the target has an A record, whatever the client (§5.7)."""
        self.count_dns_term()
        domain = await self.target(spec, name)
        addresses = await self.query(self.lookup.a, domain)
        if not addresses:
            self.count_void(domain)
        return bool(addresses)

    # -- helpers --------------------------------------------------------------

    def any_in_network(
        self, addresses: Sequence[IPAddress], cidr4: int, cidr6: int
    ) -> bool:
        mask = _MASKS4[cidr4] if self.is_v4 else _MASKS6[cidr6]
        wanted = self.ip_int & mask
        for address in addresses:  # noqa: SIM110 - faster than any() on a generator
            if int(address) & mask == wanted:
                return True
        return False

    async def addresses(self, name: str) -> Sequence[IPAddress]:
        """Return the A or AAAA records of ``name``, as the client's family."""
        return await self.query(self.fetch_address, name)

    async def ptr_names(self) -> list[str] | None:
        """Return the client's first 10 PTR names; None on any error (§5.5)."""
        try:
            names = await self.lookup.ptr(self.ip.reverse_pointer)
        except DnsError:
            return None
        self.count_records(len(names))
        # §4.6.4: names past the tenth are ignored.
        return names[: self.limits.max_ptr_names]

    async def is_validated(self, host: str) -> bool:
        """Return whether ``host`` resolves back to the client (§5.5); errors: no."""
        try:
            addresses = await self.addresses(host)
        except TempError:
            return False
        return any(int(address) == self.ip_int for address in addresses)

    async def validated_name(self, domain: str) -> str:
        """Return the %{p} value: a validated PTR name, ideally under ``domain``."""
        names = await self.ptr_names() or []
        validated = [host for host in names if await self.is_validated(host)]
        suffix = "." + domain.lower()
        for wanted in (
            lambda host: host.lower() == domain.lower(),
            lambda host: host.lower().endswith(suffix),
            lambda host: True,
        ):
            for host in validated:
                if wanted(host):
                    return host
        return "unknown"

    async def query(
        self, method: Callable[[str], Awaitable[Sequence[T]]], name: str
    ) -> Sequence[T]:
        """Run one DNS query; errors become temperror (§5).

        A name that cannot exist in the DNS (an empty or overlong label after
        macro expansion) is not sent: it has no records.
        """
        if not self.memo.is_queryable(name):
            self.note(f"{printable(name)} is not a valid DNS name: no records")
            return []
        try:
            answer = await method(name)
        except DnsError as error:
            raise dns_failure(error) from None
        self.count_records(len(answer))
        return answer

    async def target(self, spec: MacroString, name: str) -> str:
        """Expand a domain-spec into the name to query (§7.3, §4.8)."""
        target = self.target_now(spec, name)
        if target is not None:
            return target
        return query_name(expand_domain(spec, await self.full_context(spec, name)))

    def target_now(self, spec: MacroString, name: str) -> str | None:
        """Return target() if it needs no DNS (no %{p}), else None."""
        if spec.literal is not None:
            return query_name(truncate_domain(spec.literal))
        if "p" in spec.letters:
            return None
        return query_name(expand_domain(spec, self.context_for(spec, name)))

    async def full_context(self, spec: MacroString, name: str) -> MacroContext:
        """Return the macro values ``spec`` needs, %{p} included."""
        context = self.context_for(spec, name)
        if "p" in spec.letters:
            context = dataclasses.replace(
                context, validated_name=await self.validated_name(name)
            )
        return context

    def context_for(self, spec: MacroString, name: str) -> MacroContext:
        """Return the macro values ``spec`` needs, but for %{p}."""
        context = self.context
        letters = spec.letters
        if "d" in letters:
            context = dataclasses.replace(context, domain=name)
        if "t" in letters:
            context = dataclasses.replace(context, timestamp=int(self.clock()))
        return context

    def count_dns_term(self) -> None:
        self.dns_terms += 1
        if self.dns_terms > self.limits.max_dns_terms:
            raise PermError(
                f"more than {self.limits.max_dns_terms} DNS-querying terms"
                " (RFC 7208 section 4.6.4)"
            )

    def count_records(self, count: int) -> None:
        """Count the records of an answer against the check's work bound."""
        self.records += count
        if self.records > self.limits.max_records:
            raise PermError(
                f"more than {self.limits.max_records} DNS records in one check"
                " (a bound on the work of a check)"
            )

    def count_void(self, name: str) -> None:
        self.void_lookups += 1
        if self.void_lookups > self.limits.max_void_lookups:
            raise PermError(
                f"more than {self.limits.max_void_lookups} void lookups"
                f" (RFC 7208 section 4.6.4), the last for {name}"
            )

    # -- explanation (§6.2) ---------------------------------------------------

    async def explain(self, spec: MacroString | None, name: str) -> str:
        """Return the fail explanation; the default one if exp= is absent or broken."""
        explain_string = None
        if spec is not None:
            try:
                domain = await self.target(spec, name)
            except SpfError as error:  # a %{p} lookup went wrong
                self.note(f"exp: {error.problem}, using the default")
            else:
                explain_string = await fetch_explanation(
                    self.lookup, domain, self.note, self.memo.explain_string
                )
        if explain_string is None:
            explain_string = self.memo.explain_string(self.limits.default_explanation)
        # Only the start of the text is kept: expand no more than can be.
        limit = _EXPANDED_EXPLANATION * self.limits.max_explanation_length
        context = await self.full_context(explain_string, name)
        text = expand_head(explain_string, context, limit)
        return sanitise_explanation(text, self.limits.max_explanation_length)
