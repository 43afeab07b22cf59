"""Parse one SPF record, "v=spf1 ...", into typed terms (RFC 7208 §4.5, §4.6, §12).

Parsing is pure and complete: every term, every macro-string and every CIDR
length is checked here, because a syntax error anywhere in the record is a
permerror before any term is evaluated (§4.6). Network arguments of ip4/ip6
are turned into integers once, so matching is an AND and a compare.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from spf_milter.spf.errors import PermError, shown
from spf_milter.spf.macro import MacroString, parse_macro_string

VERSION: Final = "v=spf1"

# Every pattern below runs in time linear in its input: a record comes from
# anyone's DNS, up to 64 kB of it, and one regex call holds the GIL (no
# nested quantifiers over the same characters; the toplabel is checked by
# is_toplabel, not by a regex that backtracks).
_LDH = re.compile(r"[0-9a-z-]+\Z", re.ASCII | re.IGNORECASE)
_MODIFIER = re.compile(r"([a-z][a-z0-9_.\-]*)=(.*)\Z", re.ASCII | re.IGNORECASE | re.S)
_MECHANISM = re.compile(r"([a-z][a-z0-9_.\-]*)(.*)\Z", re.ASCII | re.IGNORECASE | re.S)
# §12: ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT), and so on; the
# domain-spec before a dual-cidr-length is everything up to it.
_DUAL_CIDR = re.compile(
    r"(.*?)(?:/(0|[1-9]\d*))?(?://(0|[1-9]\d*))?\Z", re.ASCII | re.S
)
# CIDR lengths are at most 3 digits (/128); longer ones are out of range
# without asking int(), which refuses more than 4,300 digits.
_MAX_CIDR_DIGITS: Final = 3
_QNUM = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)"
_IP4_NETWORK = re.compile(rf"{_QNUM}(?:\.{_QNUM}){{3}}\Z", re.ASCII)
_IP6_NETWORK = re.compile(r"[0-9a-f:.]+\Z", re.ASCII | re.IGNORECASE)


class Qualifier(enum.StrEnum):
    """The prefix of a directive (§4.6.2); its value is the result on a match."""

    PASS = "+"
    FAIL = "-"
    SOFTFAIL = "~"
    NEUTRAL = "?"


@dataclass(frozen=True, slots=True)
class All:
    """``all``: always matches (§5.1)."""


@dataclass(frozen=True, slots=True)
class Include:
    """``include:<domain>``: matches when the target's check_host() passes (§5.2)."""

    domain: MacroString


@dataclass(frozen=True, slots=True)
class A:
    """``a[:<domain>][/<cidr4>][//<cidr6>]`` (§5.3)."""

    domain: MacroString | None
    cidr4: int
    cidr6: int


@dataclass(frozen=True, slots=True)
class Mx:
    """``mx[:<domain>][/<cidr4>][//<cidr6>]`` (§5.4)."""

    domain: MacroString | None
    cidr4: int
    cidr6: int


@dataclass(frozen=True, slots=True)
class Ptr:
    """``ptr[:<domain>]`` (§5.5); SHOULD NOT be published, still evaluated."""

    domain: MacroString | None


@dataclass(frozen=True, slots=True)
class IpNetwork:
    """``ip4:<network>[/<cidr>]`` or ``ip6:...`` as integers (§5.6).

    ``version`` is 4 or 6: an ip4 term never matches an IPv6 client.
    """

    version: int
    network: int
    mask: int


@dataclass(frozen=True, slots=True)
class Exists:
    """``exists:<domain>``: matches when the name has an A record (§5.7)."""

    domain: MacroString


Mechanism = All | Include | A | Mx | Ptr | IpNetwork | Exists


@dataclass(frozen=True, slots=True)
class Directive:
    """A qualifier and a mechanism; ``text`` is the term as published."""

    qualifier: Qualifier
    mechanism: Mechanism
    text: str


@dataclass(frozen=True, slots=True)
class Record:
    """A parsed SPF record: its directives in order and its two modifiers."""

    directives: tuple[Directive, ...]
    redirect: MacroString | None = None
    explanation: MacroString | None = None

    @property
    def has_all(self) -> bool:
        """Return whether an ``all`` mechanism appears anywhere (§5.1, §6.1)."""
        return any(isinstance(d.mechanism, All) for d in self.directives)


def is_spf_record(text: bytes) -> bool:
    """Return whether a TXT record is an SPF record (§4.5): "v=spf1" then SP or end."""
    return text[:6].lower() == b"v=spf1" and (len(text) == 6 or text[6:7] == b" ")


def select_record(texts: tuple[bytes, ...]) -> Record | PermError | None:
    """Return the one SPF record among a name's TXT records (§4.5), parsed.

    None when there is none; a PermError, returned rather than raised, for
    several or for a syntax error: it is as much the answer as a record,
    and a memo of this function (memo.py) keeps it as one.
    """
    records = [text for text in texts if is_spf_record(text)]
    if not records:
        return None
    if len(records) > 1:
        return PermError(f"{len(records)} SPF records, not one")
    try:
        return parse_record(records[0])
    except PermError as error:
        return error


def parse_record(raw: bytes) -> Record:
    """Parse an SPF record (which ``is_spf_record`` accepted) or raise PermError."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        # §3.1 / §4.5: SPF records are 7-bit ASCII.
        raise PermError("record contains non-ASCII characters") from None
    directives: list[Directive] = []
    modifiers: dict[str, MacroString] = {}
    # §12: terms = *( 1*SP ( directive / modifier ) ), record ends in *SP.
    for term in text[len(VERSION) :].split(" "):
        if not term:
            continue
        modifier = _MODIFIER.match(term)
        if modifier:
            _add_modifier(modifiers, modifier.group(1).lower(), modifier.group(2), term)
        else:
            directives.append(_parse_directive(term))
    return Record(
        directives=tuple(directives),
        redirect=modifiers.get("redirect"),
        explanation=modifiers.get("exp"),
    )


def _add_modifier(
    modifiers: dict[str, MacroString], name: str, value: str, term: str
) -> None:
    if name in ("redirect", "exp"):
        if name in modifiers:
            # §6: these two modifiers MUST NOT appear more than once.
            raise PermError(f"{name}= appears more than once")
        modifiers[name] = parse_domain_spec(value, term)
        return
    # §6: unknown modifiers are ignored, but must still be valid syntax.
    parse_macro_string(value)


def _parse_directive(term: str) -> Directive:
    qualifier = Qualifier.PASS
    body = term
    if term[0] in "+-~?":
        qualifier = Qualifier(term[0])
        body = term[1:]
    found = _MECHANISM.match(body)
    if found is None:
        raise PermError(f"unknown term {shown(term)}")
    name, argument = found.group(1).lower(), found.group(2)
    return Directive(qualifier, _parse_mechanism(name, argument, term), term)


def _parse_mechanism(name: str, argument: str, term: str) -> Mechanism:
    match name:
        case "all" if not argument:
            return All()
        case "include":
            return Include(_required_domain(argument, term))
        case "a" | "mx":
            domain, cidr4, cidr6 = _domain_and_dual_cidr(argument, term)
            return A(domain, cidr4, cidr6) if name == "a" else Mx(domain, cidr4, cidr6)
        case "ptr":
            return Ptr(_optional_domain(argument, term))
        case "ip4":
            return _parse_ip4(argument, term)
        case "ip6":
            return _parse_ip6(argument, term)
        case "exists":
            return Exists(_required_domain(argument, term))
    raise PermError(f"unknown mechanism {shown(term)}")


def _required_domain(argument: str, term: str) -> MacroString:
    if not argument.startswith(":"):
        raise PermError(f"{shown(term)} needs ':' and a domain")
    return parse_domain_spec(argument[1:], term)


def _optional_domain(argument: str, term: str) -> MacroString | None:
    if not argument:
        return None
    return _required_domain(argument, term)


def _domain_and_dual_cidr(
    argument: str, term: str
) -> tuple[MacroString | None, int, int]:
    found = _DUAL_CIDR.match(argument)
    if found is None:  # cannot happen: the pattern matches any string
        raise PermError(f"invalid argument in {shown(term)}")
    domain_part, cidr4, cidr6 = found.groups()
    domain = _optional_domain(domain_part, term)
    return domain, _cidr(cidr4, 32, term), _cidr(cidr6, 128, term)


def _cidr(digits: str | None, maximum: int, term: str) -> int:
    if digits is None:
        return maximum
    if len(digits) > _MAX_CIDR_DIGITS or int(digits) > maximum:
        shown_digits = digits if len(digits) <= _MAX_CIDR_DIGITS else digits[:4] + "..."
        raise PermError(f"CIDR length /{shown_digits} out of range in {shown(term)}")
    return int(digits)


def _parse_ip4(argument: str, term: str) -> IpNetwork:
    network, length = _network_and_cidr(argument, 32, term)
    if not _IP4_NETWORK.match(network):
        raise PermError(f"invalid IPv4 network in {shown(term)}")
    mask = _mask(length, 32)
    return IpNetwork(4, int(ipaddress.IPv4Address(network)) & mask, mask)


def _parse_ip6(argument: str, term: str) -> IpNetwork:
    network, length = _network_and_cidr(argument, 128, term)
    try:
        if not _IP6_NETWORK.match(network):
            raise ValueError(network)
        address = ipaddress.IPv6Address(network)
    except ValueError:
        raise PermError(f"invalid IPv6 network in {shown(term)}") from None
    mask = _mask(length, 128)
    return IpNetwork(6, int(address) & mask, mask)


def _network_and_cidr(argument: str, maximum: int, term: str) -> tuple[str, int]:
    if not argument.startswith(":"):
        raise PermError(f"{shown(term)} needs ':' and a network")
    network, slash, digits = argument[1:].partition("/")
    if not slash:
        return network, maximum
    if not re.fullmatch(r"0|[1-9]\d*", digits, re.ASCII):
        raise PermError(f"invalid CIDR length in {shown(term)}")
    return network, _cidr(digits, maximum, term)


def _mask(length: int, bits: int) -> int:
    return ((1 << length) - 1) << (bits - length)


def parse_domain_spec(text: str, term: str) -> MacroString:
    """Parse a domain-spec: a macro-string whose end is a domain-end (§7.1, §12)."""
    spec = parse_macro_string(text)
    if spec.ends_with_expand:
        return spec
    last = spec.parts[-1] if spec.parts else ""
    if not isinstance(last, str) or not _has_domain_end(last):
        raise PermError(f"invalid domain {shown(text)} in {shown(term)}")
    return spec


def _has_domain_end(text: str) -> bool:
    """Return whether ``text`` ends in a domain-end: "." toplabel ["."] (§12)."""
    name = text[:-1] if text.endswith(".") else text
    _, dot, label = name.rpartition(".")
    return bool(dot) and is_toplabel(label)


def is_toplabel(label: str) -> bool:
    """Return whether ``label`` is a toplabel (§12), in one pass over it.

    toplabel = ( *alphanum ALPHA *alphanum ) /
               ( 1*alphanum "-" *( alphanum / "-" ) alphanum ):
    letters, digits and hyphens, neither end a hyphen, and not all digits
    (a hyphen is no digit). As one regex, its nested stars backtrack in
    time quadratic in the label.
    """
    if not _LDH.match(label) or label[0] == "-" or label[-1] == "-":
        return False
    return not label.isdigit()
