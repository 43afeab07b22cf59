"""Differential test: our check_host() and pyspf agree on generated records.

Hypothesis builds a small zone (a top-level record of random directives,
a few sub-records, A/AAAA/MX/PTR data that is sometimes missing) and a
client; both engines evaluate the MAIL FROM identity on that same zone and
must give the same result token. pyspf reads the zone through its own test
seam, ``spf.DNSLookup``, set and restored by a fixture.

Where pyspf departs from RFC 7208 in a known way (``Defect``: void lookups
and the sender split were decided with the issue, the others were found by
this test and decided by the RFC sections they cite), ``known_pyspf_defect``
names the defect and proves it: pyspf run again with just that defect
corrected must give our result. Any other disagreement fails the test, and
an engine bug found this way gets a strict-xfail reproducer at the end.

More examples locally: ``SPF_DIFF_EXAMPLES=5000 .venv/bin/pytest tests/differential``
(then with a random seed; CI runs a fixed, derandomised set).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import itertools
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import spf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers.dnszone import Outcome, Resolution, Zone
from helpers.fakelookup import FakeLookup
from helpers.pyspfzone import zone_lookup
from spf_milter.verify import check_mail_from

EXAMPLES = int(os.environ.get("SPF_DIFF_EXAMPLES", "300"))
LOCAL_RUN = "SPF_DIFF_EXAMPLES" in os.environ

TOP = "example.com"
SUBS = ("s0.example.com", "s1.example.com", "s2.example.com")
HOSTS = ("h0.example.com", "h1.example.com", "h2.example.com", "alias.example.com")
GONE = "gone.example.com"  # never has data: its lookups are void
EXP = "exp.example.com"
MACROS = "m.example.com"  # A records here are decided by a hash of the name
V4 = ("192.0.2.1", "192.0.2.2", "192.0.2.129", "198.51.100.7")
V6 = ("2001:db8::1", "2001:db8::2", "2001:db8:0:1::1", "2001:db8:ff::7")
OUTSIDERS = ("203.0.113.9", "2001:db8:dead::9", "::ffff:192.0.2.1")
LOCAL_PARTS = ("alice", "alice", "alice", "Alice", "postmaster", "a.b-c", '"x@y"')
TARGET_NAMES = (TOP, *HOSTS, *SUBS, GONE, "%{d}", "%{o}", "H1.Example.COM.")
EXISTS_TARGETS = (
    *(f"%{{{m}}}.{MACROS}" for m in ("i", "ir", "l", "L", "o", "h", "s", "d2")),
    *(f"%{{{m}}}.{MACROS}" for m in ("l1r-", "ir}.%{v", "s2r@", "i2")),
    "h0.example.com",
    GONE,
    "%{d}",
)
# Terms that are malformed or odd, but each one legal or illegal for a reason
# of RFC 7208 §4.6.1, §5 or §12; both engines must say the same.
ODD_TERMS = tuple(
    """ip4:192.0.2.1/33 ip4:192.0.2 ip4:192.0.2.01 ip6:2001:db8::zz ip6:::/129
    mx//129 a/33 a: ptr: exists include all:x foo - a:%{x}.example.com a:%{d0}
    a:h0.example.com. moo=bar moo=%{i} redirect= exp= a:example.com:25 mx/0//0
    ip4:0.0.0.0/0 ip6:::/0 ?mx/31//64 exists:%{p}.example.com""".split()  # noqa: SIM905 - 4 lines, not 27
)

LOOPBACK = "127.0.0.2"  # what the MACROS names resolve to


class _HashedZone(Zone):
    """A Zone where any name under MACROS has an A record or not by a hash.

    Macro expansions (§7) are checked this way without predicting them: a
    name expanded differently by one engine exists with a 50% chance.
    """

    def __init__(self, salt: int) -> None:
        super().__init__()
        self.salt = salt

    def resolve(self, name: str, rdtype: str) -> Resolution:
        key = name.removesuffix(".").lower()
        if not key.endswith("." + MACROS):
            return super().resolve(name, rdtype)
        if rdtype.upper() == "A" and zlib.crc32(key.encode(), self.salt) & 1:
            return Resolution(Outcome.ANSWER, (), (ipaddress.IPv4Address(LOOPBACK),))
        return Resolution(Outcome.NXDOMAIN)


@dataclass(frozen=True)
class Case:
    """One generated scenario, as plain data so that failures print it whole."""

    client: str
    sender: str
    txt: dict[str, list[str]]
    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    mx: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    ptr: dict[str, list[str]] = field(default_factory=dict)
    cname: dict[str, str] = field(default_factory=dict)
    salt: int = 0

    def zone(self) -> Zone:
        zone = _HashedZone(self.salt)
        for name, texts in self.txt.items():
            for text in texts:
                zone.add_txt(name, text.encode())
        rows = (
            (zone.add_a, self.a),
            (zone.add_aaaa, self.aaaa),
            (zone.add_ptr, self.ptr),
        )
        for add, table in rows:
            for name, values in table.items():
                for value in values:
                    add(name, value)
        for name, exchanges in self.mx.items():
            for preference, exchange in exchanges:
                zone.add_mx(name, preference, exchange)
        for name, target in self.cname.items():
            zone.add_cname(name, target)
        return zone


# -- strategies -----------------------------------------------------------------


def _cidr(values: tuple[int, ...], prefix: str) -> st.SearchStrategy[str]:
    return st.sampled_from(("", *(f"{prefix}{n}" for n in values)))


def _mechanisms(includable: tuple[str, ...]) -> dict[str, st.SearchStrategy[str]]:
    host = st.sampled_from(("", *(f":{name}" for name in TARGET_NAMES)))
    dual = st.tuples(_cidr((32, 31, 24, 16, 0), "/"), _cidr((128, 64, 48, 0), "//"))
    return {
        "all": st.just("all"),
        "ip4": st.builds(
            "ip4:{}{}".format, st.sampled_from(V4), _cidr((32, 31, 24, 0), "/")
        ),
        "ip6": st.builds(
            "ip6:{}{}".format, st.sampled_from(V6), _cidr((128, 64, 48, 0), "/")
        ),
        "a": st.builds(lambda h, c: f"a{h}{c[0]}{c[1]}", host, dual),
        "mx": st.builds(lambda h, c: f"mx{h}{c[0]}{c[1]}", host, dual),
        "include": st.sampled_from(includable).map("include:{}".format),
        "exists": st.sampled_from(EXISTS_TARGETS).map("exists:{}".format),
        "ptr": st.sampled_from(("ptr", f"ptr:{TOP}", "ptr:h0.example.com")),
        "odd": st.sampled_from(ODD_TERMS),
    }


def _directive(
    kinds: tuple[str, ...], includable: tuple[str, ...]
) -> st.SearchStrategy[str]:
    """One term: a qualifier and a mechanism of one of ``kinds``, any case."""
    mechanisms = _mechanisms(includable)
    qualifier = st.sampled_from(("", "+", "-", "~", "?"))
    term = st.sampled_from(kinds).flatmap(
        lambda kind: st.builds("{}{}".format, qualifier, mechanisms[kind])
    )
    # §4.6.1: mechanism and modifier names are case-insensitive, and so is
    # DNS; macro letters are not (upper case means URL-escaped, §7.3).
    return st.tuples(term, st.integers(0, 7)).map(
        lambda t: t[0].upper() if t[1] == 0 and "%" not in t[0] else t[0]
    )


@st.composite
def _record(draw: st.DrawFn, later: tuple[str, ...], *, top: bool) -> str:
    """A record; includes and redirects point only at ``later`` sub-records."""
    kinds: tuple[str, ...] = ("ip4", "ip4", "ip6", "a", "mx", "exists", "all")
    if top:
        kinds += ("include", "include", "ptr")
    elif later:
        kinds += ("include",)
    includable = (*later, "missing.example.com", "alias-s.example.com")
    terms = draw(st.lists(_directive(kinds, includable), max_size=8 if top else 4))
    if draw(st.integers(0, 5)) == 5:
        odd = _directive(("odd",), includable)
        terms.insert(draw(st.integers(0, len(terms))), draw(odd))
    if later and draw(st.integers(0, 4)) == 4:
        terms.append(f"redirect={draw(st.sampled_from(later))}")
    if top and draw(st.integers(0, 3)) == 3:
        terms.append(f"exp={EXP}")
    version = draw(st.sampled_from(("v=spf1", "v=spf1", "v=spf1", "V=SPF1")))
    return draw(st.sampled_from((" ", " ", "  "))).join([version, *terms])


@st.composite
def _addresses(draw: st.DrawFn) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    names = (TOP, *SUBS, *HOSTS[:-1])
    pick4 = st.lists(st.sampled_from(V4), max_size=2, unique=True)
    pick6 = st.lists(st.sampled_from(V6), max_size=2, unique=True)
    return {n: draw(pick4) for n in names}, {n: draw(pick6) for n in names}


@st.composite
def _txt(draw: st.DrawFn) -> dict[str, list[str]]:
    txt = {TOP: [draw(_record(SUBS, top=True))]}
    for index, name in enumerate(SUBS):
        if draw(st.integers(0, 5)) < 5:  # now and then a sub-record is missing
            txt[name] = [draw(_record(SUBS[index + 1 :], top=False))]
    extra = draw(st.sampled_from(("",) * 8 + ("site-verification=x", "v=spf1 -all")))
    if extra:  # §4.5: other TXT records are ignored, a second SPF one is not
        txt[TOP].append(extra)
    if draw(st.booleans()):
        txt[EXP] = ["%{i} is not one of %{d}'s senders"]
    return txt


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A whole scenario: records, address data, client and sender."""
    exchange = st.tuples(st.integers(0, 20), st.sampled_from((*HOSTS, TOP, GONE)))
    exchanges = st.lists(exchange, max_size=3)
    if draw(st.integers(0, 20)) == 20:  # §4.6.4: more than 10 MX names
        exchanges = st.just([(n, "h0.example.com") for n in range(11)])
    ptr_names = st.lists(st.sampled_from((*HOSTS, TOP, GONE)), max_size=2, unique=True)
    local = draw(st.sampled_from(LOCAL_PARTS))
    a, aaaa = draw(_addresses())
    return Case(
        client=draw(st.sampled_from(V4 + V6 + OUTSIDERS)),
        sender=draw(st.sampled_from((f"{local}@{TOP}", f"{local}@{TOP}", ""))),
        txt=draw(_txt()),
        a=a,
        aaaa=aaaa,
        mx={n: draw(exchanges) for n in (TOP, *SUBS)},
        ptr={
            ipaddress.ip_address(ip).reverse_pointer: draw(ptr_names)
            for ip in (*V4, *V6)
        },
        cname={
            "alias.example.com": draw(st.sampled_from(("h0.example.com", GONE))),
            "alias-s.example.com": "s1.example.com",
        },
        salt=draw(st.integers(0, 3)),
    )


# -- pyspf, reading the same zone ----------------------------------------------


@pytest.fixture
def pyspf_zone() -> Iterator[Callable[[Zone], None]]:
    """Let pyspf read a Zone through its test seam; put the seam back after."""
    saved = spf.DNSLookup

    def serve(zone: Zone) -> None:
        spf.DNSLookup = zone_lookup(zone)

    try:
        yield serve
    finally:
        spf.DNSLookup = saved


class Defect(enum.Enum):
    """The known pyspf defects, each with the RFC text that decides it."""

    VOIDS = (
        "pyspf counts a void lookup for every empty answer: the A/AAAA lookups "
        "of MX hosts and PTR names, the PTR lookup of %{p}, each step of a CNAME "
        "chain; RFC 7208 §4.6.4 limits the terms whose DNS queries return no "
        "answer, one per term"
    )
    SPLIT = (
        "pyspf splits <sender> at the first '@'; an RFC 5321 §4.1.2 quoted "
        "local part may hold '@', so the domain follows the last (RFC 7208 §4.3)"
    )
    MACROS = (
        "pyspf accepts macros RFC 7208 forbids: any non-alphanumeric delimiter "
        "where §7.1 allows only . - + , / _ =, and a zero digit transformer "
        "(§7.3: the value MUST be nonzero); a syntax error is permerror (§4.6)"
    )
    MODIFIER_CASE = (
        "pyspf matches modifier names case-sensitively, so REDIRECT= and EXP= "
        "are unknown modifiers to it; RFC 7208 §4.6.1: mechanism and modifier "
        "names are case-insensitive (and §6: each at most once)"
    )
    SELF_INCLUDE = (
        "pyspf rejects a record whose include names the current domain before "
        "evaluating it; RFC 7208 §4.6 rejects only syntax errors up front and "
        "§4.6.2 stops at the first match, so an include never reached is harmless"
    )
    EXISTS = (
        "pyspf reads a bare exists with a qualifier (+exists) as exists:<domain>; "
        'RFC 7208 §5.7: exists = "exists" ":" domain-spec, so it is a syntax '
        "error, permerror (§4.6)"
    )


# §7.1: macro-expand = "%{" macro-letter transformers *delimiter "}", with a
# nonzero DIGIT (§7.3); ABNF strings are case-insensitive (RFC 5234 §2.3).
_MACRO = re.compile(r"%(?:[%_-]|\{([^}]*)\})")
_MACRO_BODY = re.compile(r"[a-z](?:[0-9]*[1-9][0-9]*)?r?[-.+,/_=]*", re.IGNORECASE)
_BARE_EXISTS = re.compile(r"[-+~?]exists", re.IGNORECASE)
_KNOWN_MODIFIER = re.compile(r"(?<= )(redirect|exp)=", re.IGNORECASE)


def _bad_macro(text: str) -> bool:
    """Return whether a macro in ``text`` breaks §7.1 or §7.3 in a way pyspf misses."""
    return any(
        body is not None and not _MACRO_BODY.fullmatch(body)
        for body in (found.group(1) for found in _MACRO.finditer(text))
    )


class _CorrectedPyspf(spf.query):  # type: ignore[misc]  # pyspf has no types
    """pyspf with chosen known defects corrected, to show they explain a difference."""

    def __init__(self, client: str, sender: str, fixed: frozenset[Defect]) -> None:
        super().__init__(i=client, s=sender, h=TOP, querytime=20)
        self.fixed = fixed
        self.in_getp = False
        if Defect.SPLIT in fixed and sender:
            local, _, domain = sender.rpartition("@")
            self.l, self.o, self.d = local or "postmaster", domain, domain

    def check1(self, record: str, domain: str, recursion: int) -> tuple[object, ...]:
        if Defect.MODIFIER_CASE in self.fixed and record:
            record = _KNOWN_MODIFIER.sub(lambda m: m.group().lower(), record)
        return super().check1(record, domain, recursion)  # type: ignore[no-any-return]

    def validate_mechanism(self, mech: str) -> tuple[object, ...]:
        if Defect.EXISTS in self.fixed and _BARE_EXISTS.fullmatch(mech):
            raise spf.PermError("implicit exists not allowed", mech)
        try:
            return super().validate_mechanism(mech)  # type: ignore[no-any-return]
        except spf.PermError as error:
            if Defect.SELF_INCLUDE not in self.fixed or "recursion" not in error.msg:
                raise
        # What pyspf returns for an include, had it not looked for a loop.
        target = self.expand_domain(mech.split(":", 1)[1])
        return mech, "include", target, self.cidrmax, spf.RESULTS.get(mech[0], "pass")

    def expand(self, text: str, stripdot: bool = True) -> str:
        if Defect.MACROS in self.fixed and _bad_macro(text):
            raise spf.PermError("invalid macro", text)
        return super().expand(text, stripdot)  # type: ignore[no-any-return]

    def dns(
        self,
        name: str,
        qtype: str,
        cnames: dict[str, str] | None = None,
        ignore_void: bool = False,
    ) -> list[Any]:
        # pyspf counts a void lookup at each step of a CNAME chain that ends
        # empty, where the term's first query already counts it once, and for
        # the PTR lookup behind %{p}, where the term's own query counts.
        if Defect.VOIDS in self.fixed and (cnames or self.in_getp):
            ignore_void = True
        return super().dns(name, qtype, cnames, ignore_void)  # type: ignore[no-any-return]

    def dns_mx(self, domainname: str) -> list[str]:
        if Defect.VOIDS not in self.fixed:
            return super().dns_mx(domainname)  # type: ignore[no-any-return]
        names = self.dns(domainname, "MX")  # the term's one void lookup, if empty
        if len(names) > spf.MAX_MX:
            raise spf.PermError(f"More than {spf.MAX_MX} MX records returned")
        names.sort()
        return [a for mx in names for a in self.dns(mx[1], self.A, ignore_void=True)]

    def getp(self) -> str:
        self.in_getp = True
        try:
            return super().getp()  # type: ignore[no-any-return]
        finally:
            self.in_getp = False

    def validated_ptrs(self) -> list[str]:
        if Defect.VOIDS not in self.fixed:
            return super().validated_ptrs()  # type: ignore[no-any-return]
        names = self.dns_ptr(self.i)[: spf.MAX_PTR]  # the term's void lookup
        return [
            name
            for name in names
            if self.cidrmatch(self.dns(name, self.A, ignore_void=True), self.cidrmax)
        ]


def pyspf_result(case: Case, fixed: frozenset[Defect] = frozenset()) -> str:
    """Return pyspf's result token, with the ``fixed`` defects corrected."""
    query = _CorrectedPyspf(case.client, case.sender, fixed)
    result, _code, _explanation = query.check()
    return str(result)


def our_result(case: Case, zone: Zone) -> str:
    """Return our result token for the MAIL FROM identity, as the milter checks it."""
    checked = asyncio.run(
        check_mail_from(
            FakeLookup(zone), ipaddress.ip_address(case.client), case.sender, TOP
        )
    )
    return str(checked.result.result)


def known_pyspf_defect(case: Case, ours: str) -> str | None:
    """Return the known pyspf defects that explain a disagreement, or None.

    They explain it when pyspf, run again with just those defects corrected,
    gives ``ours``. Only defects the case can trigger are tried.
    """
    texts = [text for texts in case.txt.values() for text in texts]
    possible = [Defect.VOIDS]
    if case.sender.count("@") > 1:
        possible.append(Defect.SPLIT)
    if any(_bad_macro(text) for text in texts):
        possible.append(Defect.MACROS)
    if any(_BARE_EXISTS.search(text) for text in texts):
        possible.append(Defect.EXISTS)
    if any(_KNOWN_MODIFIER.search(text) for text in texts):
        possible.append(Defect.MODIFIER_CASE)
    if any("include:" in text.lower() for text in texts):
        possible.append(Defect.SELF_INCLUDE)
    for size in range(1, len(possible) + 1):
        for defects in itertools.combinations(possible, size):
            if pyspf_result(case, frozenset(defects)) == ours:
                return "; and ".join(defect.value for defect in defects)
    return None


# -- the tests ------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    derandomize=not LOCAL_RUN,
    database=None,
    deadline=None,
    # pyspf_zone holds no per-example state: each example serves its own zone.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=cases())
def test_engines_agree_on_the_result(
    case: Case, pyspf_zone: Callable[[Zone], None]
) -> None:
    zone = case.zone()
    pyspf_zone(zone)
    ours, theirs = our_result(case, zone), pyspf_result(case)
    if ours == theirs:
        event(f"agree: {ours}")
        return
    reason = known_pyspf_defect(case, ours)
    assert reason is not None, f"ours: {ours}, pyspf: {theirs}, case: {case}"
    event(f"known pyspf defect: {reason[:48]}")


def _bare(
    record: str,
    sender: str = "alice@example.com",
    txt: dict[str, list[str]] | None = None,
    **data: Any,
) -> Case:
    """A case with ``record`` at TOP, client 192.0.2.1, and only ``data``."""
    txt = {TOP: [record], **(txt or {})}
    return Case(client="192.0.2.1", sender=sender, txt=txt, **data)


@pytest.mark.parametrize(
    ("case", "ours", "defect"),
    [
        pytest.param(
            _bare(
                "v=spf1 mx -all", mx={TOP: [(n, h) for n, h in enumerate(HOSTS[:3])]}
            ),
            "fail",
            Defect.VOIDS,
            id="mx-hosts-without-addresses",
        ),
        pytest.param(
            _bare(
                "v=spf1 a:alias.example.com a -all", cname={"alias.example.com": GONE}
            ),
            "fail",
            Defect.VOIDS,
            id="cname-to-nothing",
        ),
        pytest.param(
            _bare("v=spf1 exists:%{p}.example.com a:gone.example.com -all"),
            "fail",
            Defect.VOIDS,
            id="ptr-lookup-of-p-macro",
        ),
        pytest.param(
            _bare("v=spf1 -all", sender='"x@y"@example.com'),
            "fail",
            Defect.SPLIT,
            id="quoted-at-in-local-part",
        ),
        pytest.param(
            _bare("v=spf1 a:%{d0} -all"), "permerror", Defect.MACROS, id="digit-zero"
        ),
        pytest.param(
            _bare(
                "v=spf1 REDIRECT=s0.example.com",
                txt={"s0.example.com": ["v=spf1 -all"]},
            ),
            "fail",
            Defect.MODIFIER_CASE,
            id="upper-case-redirect",
        ),
        pytest.param(
            _bare("v=spf1 ip4:192.0.2.1 include:example.com"),
            "pass",
            Defect.SELF_INCLUDE,
            id="self-include-not-reached",
        ),
        pytest.param(
            _bare("v=spf1 +exists"), "permerror", Defect.EXISTS, id="bare-exists"
        ),
        pytest.param(
            _bare("v=spf1 exists:%{s2r@}.m.example.com"),
            "permerror",
            Defect.MACROS,
            id="at-sign-as-delimiter",
        ),
    ],
)
def test_known_pyspf_defects_still_show(
    case: Case, ours: str, defect: Defect, pyspf_zone: Callable[[Zone], None]
) -> None:
    """Each tolerated defect is real today; if pyspf fixes one, drop it."""
    zone = case.zone()
    pyspf_zone(zone)
    assert our_result(case, zone) == ours
    assert pyspf_result(case) != ours
    assert known_pyspf_defect(case, ours) == defect.value


def test_upper_case_reverse_transformer() -> None:
    # RFC 7208 §7.1 transformers = *DIGIT ["r"], case-insensitive (RFC 5234
    # §2.3): found by this differential test (pyspf ignores the R: wrong too).
    case = _bare("v=spf1 exists:%{iR}.rev.example.com -all")
    zone = case.zone()
    zone.add_a("1.2.0.192.rev.example.com", LOOPBACK)
    assert our_result(case, zone) == "pass"
