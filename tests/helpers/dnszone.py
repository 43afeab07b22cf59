"""A small DNS zone model shared by FakeLookup and the loopback DnsServer.

Both test doubles answer from the same ``Zone.resolve()``, so a scenario
behaves identically in memory and over real DNS. A zone is built three ways:

- in Python: ``zone.add_txt("example.com", b"v=spf1 -all")``, ``add_a``, ...;
- from an openspf test-suite scenario: ``Zone.from_openspf(doc["zonedata"])``,
  with the conventions of tests/openspf/README.md;
- from RFC 1035 master-file text: ``Zone.from_text(path.read_text())``. Names
  are relative to ``$ORIGIN`` (the root before the first one); ``$TTL`` or a
  TTL per record is required; SOA and NS records only make their owner exist.

Per-name behaviours are set from Python (``zone.set_timeout(name)``,
``set_servfail``, ``set_refused``, ``set_delay(name, seconds)``) or in zone
text by comment directives, one per line, names relative to the current
``$ORIGIN`` unless they end in a dot::

    ;! timeout  slow          ; unanswered for every type slow has no records of
    ;! servfail broken        ; every query answered SERVFAIL
    ;! refused  closed.example.org.
    ;! delay    lazy 0.5      ; answers wait 0.5 s (other names are not held up)
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import dns.name
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.mxbase
import dns.rdtypes.txtbase
import dns.zone

MAX_STRING: Final = 255  # RFC 1035 §3.3: a <character-string> holds at most 255 bytes
MAX_LABEL: Final = 63  # RFC 1035 §2.3.4
MAX_NAME: Final = 255  # RFC 1035 §2.3.4, in wire octets

Txt = tuple[bytes, ...]  # one TXT/SPF record: its character-strings


@dataclass(frozen=True, slots=True)
class Mx:
    """One MX record (RFC 1035 §3.3.9)."""

    preference: int
    exchange: str


Rdata = Txt | ipaddress.IPv4Address | ipaddress.IPv6Address | Mx | str


class RdType(enum.StrEnum):
    """The record types a Zone holds; PTR and CNAME data are target names."""

    A = "A"
    AAAA = "AAAA"
    CNAME = "CNAME"
    MX = "MX"
    PTR = "PTR"
    SPF = "SPF"  # type 99, RFC 4408; RFC 7208 §3.1 deprecates it
    TXT = "TXT"


class Behaviour(enum.StrEnum):
    """How a name misbehaves instead of answering normally."""

    TIMEOUT = "timeout"  # queries for types the name lacks are never answered
    SERVFAIL = "servfail"
    REFUSED = "refused"


class Outcome(enum.StrEnum):
    """What a query resolves to."""

    ANSWER = "answer"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    CNAME_LOOP = "cname-loop"  # the chain came back to a name already seen
    TIMEOUT = "timeout"
    SERVFAIL = "servfail"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The result of one query against a Zone.

    ``cnames`` are the targets of the CNAMEs followed, in order: the first
    CNAME is owned by the query name, each next one by the previous target,
    and ``records`` by the last target (or the query name if none).
    """

    outcome: Outcome
    cnames: tuple[str, ...] = ()
    records: tuple[Rdata, ...] = ()
    delay: float = 0.0


def normalize(name: str) -> str:
    """Return the lookup key of ``name``: lower case, no trailing dot."""
    return name.removesuffix(".").lower()


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` can be a DNS name (RFC 1035 §2.3.4)."""
    key = name.removesuffix(".")
    if not key:
        return
    labels = [label.encode("utf-8", "surrogateescape") for label in key.split(".")]
    if any(not 0 < len(label) <= MAX_LABEL for label in labels):
        raise ValueError(f"not a DNS name (empty or long label): {name!r}")
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME:
        raise ValueError(f"not a DNS name (longer than {MAX_NAME} octets): {name!r}")


def split_string(data: bytes) -> Txt:
    """Split ``data`` into 255-byte character-strings; ``b""`` stays one string."""
    if not data:
        return (b"",)
    return tuple(data[i : i + MAX_STRING] for i in range(0, len(data), MAX_STRING))


class Zone:
    """Records and behaviours per owner name (case-insensitive).

    The server is authoritative for every name: an unlisted name without
    listed descendants does not exist. Identical records of one type are
    kept once, as in any RRset (RFC 2181 §5), which is what a client sees.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, dict[str, list[Rdata]]] = {}
        self._existing: set[str] = set()  # listed names and their ancestors
        self._behaviours: dict[str, Behaviour] = {}
        self._delays: dict[str, float] = {}
        self.version = 0  # bumped on every change, so users can drop memos

    # -- building ---------------------------------------------------------

    def _node(self, name: str) -> dict[str, list[Rdata]]:
        check_name(name)
        key = normalize(name)
        self.version += 1
        if key not in self._nodes:
            labels = key.split(".") if key else []
            self._existing.update(".".join(labels[i:]) for i in range(len(labels) + 1))
        return self._nodes.setdefault(key, {})

    def _add(self, name: str, rdtype: RdType, value: Rdata) -> None:
        records = self._node(name).setdefault(rdtype, [])
        if value not in records:
            records.append(value)

    def touch(self, name: str) -> None:
        """Make ``name`` exist with no records (NODATA for every type)."""
        self._node(name)

    def add_txt(self, name: str, *strings: bytes) -> None:
        """Add one TXT record; strings over 255 bytes are split."""
        self._add(name, RdType.TXT, _character_strings(strings))

    def add_spf(self, name: str, *strings: bytes) -> None:
        """Add one record of type SPF (99); strings over 255 bytes are split."""
        self._add(name, RdType.SPF, _character_strings(strings))

    def add_a(self, name: str, address: str | ipaddress.IPv4Address) -> None:
        """Add one A record."""
        self._add(name, RdType.A, ipaddress.IPv4Address(address))

    def add_aaaa(self, name: str, address: str | ipaddress.IPv6Address) -> None:
        """Add one AAAA record."""
        self._add(name, RdType.AAAA, ipaddress.IPv6Address(address))

    def add_mx(self, name: str, preference: int, exchange: str) -> None:
        """Add one MX record."""
        if not 0 <= preference <= 0xFFFF:
            raise ValueError(f"MX preference out of range: {preference}")
        check_name(exchange)
        self._add(name, RdType.MX, Mx(preference, exchange.removesuffix(".")))

    def add_ptr(self, name: str, target: str) -> None:
        """Add one PTR record."""
        check_name(target)
        self._add(name, RdType.PTR, target.removesuffix("."))

    def add_cname(self, name: str, target: str) -> None:
        """Make ``name`` an alias of ``target`` (one CNAME per name, RFC 2181 §10.1)."""
        check_name(target)
        self._node(name)[RdType.CNAME] = [target.removesuffix(".")]

    def set_timeout(self, name: str) -> None:
        """Never answer queries for types ``name`` has no records of."""
        self._node(name)
        self._behaviours[normalize(name)] = Behaviour.TIMEOUT

    def set_servfail(self, name: str) -> None:
        """Answer every query for ``name`` with SERVFAIL."""
        self._node(name)
        self._behaviours[normalize(name)] = Behaviour.SERVFAIL

    def set_refused(self, name: str) -> None:
        """Answer every query for ``name`` with REFUSED."""
        self._node(name)
        self._behaviours[normalize(name)] = Behaviour.REFUSED

    def set_delay(self, name: str, seconds: float) -> None:
        """Hold answers to queries for ``name`` back by ``seconds``."""
        check_name(name)
        self.version += 1
        self._delays[normalize(name)] = seconds

    # -- answering --------------------------------------------------------

    def resolve(self, name: str, rdtype: str) -> Resolution:
        """Resolve ``name``/``rdtype`` (``"TXT"``) as an authoritative server would."""
        key, rdtype = normalize(name), rdtype.upper()
        delay = self._delays.get(key, 0.0)
        seen = {key}
        cnames: list[str] = []
        while True:
            outcome, records = self._lookup(key, rdtype)
            if outcome is not None:
                return Resolution(outcome, tuple(cnames), records, delay)
            target = str(records[0])
            cnames.append(target)
            key = normalize(target)
            if key in seen:  # RFC 1034 §3.6.2: a CNAME loop is an error
                return Resolution(Outcome.CNAME_LOOP, tuple(cnames), (), delay)
            seen.add(key)

    def _lookup(
        self, key: str, rdtype: str
    ) -> tuple[Outcome | None, tuple[Rdata, ...]]:
        """Answer one name; an outcome of None means "follow this CNAME"."""
        behaviour = self._behaviours.get(key)
        if behaviour is Behaviour.SERVFAIL:
            return Outcome.SERVFAIL, ()
        if behaviour is Behaviour.REFUSED:
            return Outcome.REFUSED, ()
        node = self._nodes.get(key, {})
        if records := node.get(rdtype):
            return Outcome.ANSWER, tuple(records)
        if RdType.CNAME in node:  # RFC 1034 §3.6.2: restart at the canonical name
            return None, tuple(node[RdType.CNAME])
        if behaviour is Behaviour.TIMEOUT:
            return Outcome.TIMEOUT, ()
        if key in self._existing:  # RFC 8020: empty non-terminals exist
            return Outcome.NODATA, ()
        return Outcome.NXDOMAIN, ()

    # -- loading ----------------------------------------------------------

    @classmethod
    def from_openspf(cls, zonedata: Mapping[str, Iterable[object]]) -> Zone:
        """Build a zone from one openspf scenario's ``zonedata`` mapping."""
        zone = cls()
        for name, entries in zonedata.items():
            zone.touch(name)
            types: set[str] = set()
            for entry in entries:
                types.update(_load_openspf_entry(zone, name, entry))
            if RdType.TXT not in types:
                zone._copy_spf_to_txt(name)
        return zone

    def _copy_spf_to_txt(self, name: str) -> None:
        # Suite README: SPF records are also served as TXT unless the name
        # has a TXT entry of its own (even "TXT: NONE").
        for record in self._nodes[normalize(name)].get(RdType.SPF, []):
            self._add(name, RdType.TXT, record)

    @classmethod
    def from_text(cls, text: str) -> Zone:
        """Build a zone from RFC 1035 master-file text and ``;!`` directives."""
        parsed = dns.zone.from_text(
            text,
            origin=dns.name.root,
            relativize=False,
            check_origin=False,
            allow_include=False,
        )
        zone = cls()
        for owner, _ttl, rdata in parsed.iterate_rdatas():
            _load_rdata(zone, name_text(owner), rdata)
        for directive, name, argument in _directives(text):
            _apply_directive(zone, directive, name, argument)
        return zone


def name_text(name: dns.name.Name) -> str:
    """Return ``name`` as plain text, no escapes, no trailing dot."""
    return ".".join(
        label.decode("utf-8", "surrogateescape") for label in name.labels[:-1]
    )


def _character_strings(strings: Iterable[bytes]) -> Txt:
    """Return the record's strings, split at 255 bytes; no strings → one empty."""
    parts = [part for data in strings for part in split_string(data)]
    return tuple(parts) or (b"",)


def _openspf_bytes(text: object) -> bytes:
    """Encode suite text byte for byte: a char ≤ U+00FF is one byte (README)."""
    value = str(text)
    if all(ord(char) <= 0xFF for char in value):
        return value.encode("latin-1")
    return value.encode("utf-8")


def _load_openspf_entry(zone: Zone, name: str, entry: object) -> set[str]:
    """Add one zonedata entry; return the types it mentions (for SPF→TXT)."""
    if entry == "TIMEOUT":
        zone.set_timeout(name)
        return set()
    if not isinstance(entry, Mapping) or len(entry) != 1:
        raise ValueError(f"{name}: bad zonedata entry {entry!r}")
    ((rdtype, value),) = entry.items()
    if value == "NONE":
        return {str(rdtype)}
    match rdtype:
        case "TXT" | "SPF":
            items = value if isinstance(value, list) else [value]
            strings = [_openspf_bytes(item) for item in items]
            add = zone.add_txt if rdtype == "TXT" else zone.add_spf
            add(name, *strings)
        case "A":
            zone.add_a(name, str(value))
        case "AAAA":
            zone.add_aaaa(name, str(value))
        case "MX":
            preference, exchange = value
            zone.add_mx(name, int(preference), str(exchange))
        case "PTR":
            zone.add_ptr(name, str(value))
        case "CNAME":
            zone.add_cname(name, str(value))
        case _:
            raise ValueError(f"{name}: unsupported record type {rdtype!r}")
    return {str(rdtype)}


def _load_rdata(zone: Zone, owner: str, rdata: dns.rdata.Rdata) -> None:
    """Add one dnspython rdata from a zone file to ``zone``."""
    match rdata:
        case dns.rdtypes.txtbase.TXTBase() if rdata.rdtype == dns.rdatatype.SPF:
            zone.add_spf(owner, *rdata.strings)
        case dns.rdtypes.txtbase.TXTBase():
            zone.add_txt(owner, *rdata.strings)
        case dns.rdtypes.IN.A.A():
            zone.add_a(owner, rdata.address)
        case dns.rdtypes.IN.AAAA.AAAA():
            zone.add_aaaa(owner, rdata.address)
        case dns.rdtypes.mxbase.MXBase():
            zone.add_mx(owner, rdata.preference, name_text(rdata.exchange))
        case dns.rdtypes.ANY.PTR.PTR():
            zone.add_ptr(owner, name_text(rdata.target))
        case dns.rdtypes.ANY.CNAME.CNAME():
            zone.add_cname(owner, name_text(rdata.target))
        case dns.rdtypes.ANY.SOA.SOA() | dns.rdtypes.ANY.NS.NS():
            zone.touch(owner)
        case _:
            rdtype = dns.rdatatype.to_text(rdata.rdtype)
            raise ValueError(f"{owner}: unsupported record type {rdtype}")


_DIRECTIVE = re.compile(r"\s*;!\s*(\w+)\s+(\S+)(?:\s+([^\s;]+))?\s*(?:;.*)?")
_ORIGIN = re.compile(r"\$ORIGIN\s+(\S+)", re.IGNORECASE)


def _directives(text: str) -> Iterable[tuple[str, str, str | None]]:
    """Yield (directive, absolute name, argument) for each ``;!`` line."""
    origin = ""
    for line in text.splitlines():
        if found := _ORIGIN.match(line):
            origin = found.group(1).removesuffix(".")
        elif found := _DIRECTIVE.fullmatch(line):
            directive, name, argument = found.groups()
            yield directive.lower(), _absolute(name, origin), argument


def _absolute(name: str, origin: str) -> str:
    """Resolve a zone-file name against ``origin`` (RFC 1035 §5.1)."""
    if name == "@":
        return origin
    if name.endswith("."):
        return name
    return f"{name}.{origin}" if origin else name


def _apply_directive(
    zone: Zone, directive: str, name: str, argument: str | None
) -> None:
    """Apply one ``;!`` directive to ``zone``."""
    match directive, argument:
        case "timeout", None:
            zone.set_timeout(name)
        case "servfail", None:
            zone.set_servfail(name)
        case "refused", None:
            zone.set_refused(name)
        case "delay", str(seconds):
            zone.set_delay(name, float(seconds))
        case _:
            raise ValueError(f"bad zone directive: ;! {directive} {name} {argument}")
