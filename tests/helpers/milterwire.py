"""The milter protocol's wire format, version 6: constants and codec.

Read from libmilter's mfdef.h and Postfix's milter8.c (no code copied).
Every packet is a 4-octet big-endian length (command octet included), the
command octet, then the data; strings end in NUL. tests/helpers/milterclient.py
speaks it.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

VERSION: Final = 6
MAX_PACKET: Final = 1 << 20  # SMFIP_MDS_1M is the largest size a milter may use
BODY_CHUNK: Final = 65535  # MILTER_CHUNK_SIZE

# Commands, MTA to milter (mfdef.h SMFIC_*).
SMFIC_ABORT: Final = b"A"
SMFIC_BODY: Final = b"B"
SMFIC_CONNECT: Final = b"C"
SMFIC_MACRO: Final = b"D"
SMFIC_BODYEOB: Final = b"E"
SMFIC_HELO: Final = b"H"
SMFIC_HEADER: Final = b"L"
SMFIC_MAIL: Final = b"M"
SMFIC_EOH: Final = b"N"
SMFIC_OPTNEG: Final = b"O"
SMFIC_QUIT: Final = b"Q"
SMFIC_RCPT: Final = b"R"
SMFIC_DATA: Final = b"T"


class Action(enum.IntFlag):
    """What the milter may do to a message (SMFIF_*)."""

    ADDHDRS = 0x01
    CHGBODY = 0x02
    ADDRCPT = 0x04
    DELRCPT = 0x08
    CHGHDRS = 0x10
    QUARANTINE = 0x20
    CHGFROM = 0x40
    ADDRCPT_PAR = 0x80
    SETSYMLIST = 0x100


class Step(enum.IntFlag):
    """Protocol steps the milter may decline or not answer (SMFIP_*)."""

    NOCONNECT = 0x1
    NOHELO = 0x2
    NOMAIL = 0x4
    NORCPT = 0x8
    NOBODY = 0x10
    NOHDRS = 0x20
    NOEOH = 0x40
    NR_HDR = 0x80
    NOUNKNOWN = 0x100
    NODATA = 0x200
    SKIP = 0x400
    RCPT_REJ = 0x800
    NR_CONN = 0x1000
    NR_HELO = 0x2000
    NR_MAIL = 0x4000
    NR_RCPT = 0x8000
    NR_DATA = 0x10000
    NR_UNKN = 0x20000
    NR_EOH = 0x40000
    NR_BODY = 0x80000
    HDR_LEADSPC = 0x100000


POSTFIX_ACTIONS: Final = Action(0x1FF)  # milter8.c my_actions
POSTFIX_STEPS: Final = Step(0x1FFFFF)  # milter8.c MILTER8_V6_PROTO_MASK


class Stage(enum.IntEnum):
    """Macro list stages in the SMFIC_OPTNEG reply (SMFIM_*)."""

    CONNECT = 0
    HELO = 1
    ENVFROM = 2
    ENVRCPT = 3
    DATA = 4
    EOM = 5
    EOH = 6


@dataclass(frozen=True, slots=True)
class Event:
    """How one MTA event is sent: its skip flag, no-reply flag, macro stage."""

    command: bytes
    skip: int  # the SMFIP_NO* flag that skips it, 0 if none (plain ints: fast)
    no_reply: int  # the SMFIP_NR_* flag that skips its reply, 0 if none
    stage: Stage


# Postfix sends header events with the end-of-header macros, body chunks
# with the end-of-message ones (milter8.c milter8_header, milter8_body).
EVENTS: Final = {
    SMFIC_CONNECT: Event(
        SMFIC_CONNECT, int(Step.NOCONNECT), int(Step.NR_CONN), Stage.CONNECT
    ),
    SMFIC_HELO: Event(SMFIC_HELO, int(Step.NOHELO), int(Step.NR_HELO), Stage.HELO),
    SMFIC_MAIL: Event(SMFIC_MAIL, int(Step.NOMAIL), int(Step.NR_MAIL), Stage.ENVFROM),
    SMFIC_RCPT: Event(SMFIC_RCPT, int(Step.NORCPT), int(Step.NR_RCPT), Stage.ENVRCPT),
    SMFIC_DATA: Event(SMFIC_DATA, int(Step.NODATA), int(Step.NR_DATA), Stage.DATA),
    SMFIC_HEADER: Event(SMFIC_HEADER, int(Step.NOHDRS), int(Step.NR_HDR), Stage.EOH),
    SMFIC_EOH: Event(SMFIC_EOH, int(Step.NOEOH), int(Step.NR_EOH), Stage.EOH),
    SMFIC_BODY: Event(SMFIC_BODY, int(Step.NOBODY), int(Step.NR_BODY), Stage.EOM),
    SMFIC_BODYEOB: Event(SMFIC_BODYEOB, 0, 0, Stage.EOM),
}


class Verdict(enum.StrEnum):
    """The milter's decision on an event (replycode maps on its first digit)."""

    CONTINUE = "continue"
    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DISCARD = "discard"
    SKIP = "skip"
    SHUTDOWN = "shutdown"
    CONN_FAIL = "conn_fail"


VERDICTS: Final = {
    b"c": Verdict.CONTINUE,
    b"a": Verdict.ACCEPT,
    b"r": Verdict.REJECT,
    b"t": Verdict.TEMPFAIL,
    b"d": Verdict.DISCARD,
    b"s": Verdict.SKIP,
    b"4": Verdict.SHUTDOWN,
    b"f": Verdict.CONN_FAIL,
}
SMFIR_PROGRESS: Final = b"p"
SMFIR_REPLYCODE: Final = b"y"
MODIFICATIONS: Final = {
    b"h": "addheader",
    b"i": "insheader",
    b"m": "chgheader",
    b"q": "quarantine",
    b"e": "chgfrom",
    b"+": "addrcpt",
    b"2": "addrcpt_par",
    b"-": "delrcpt",
    b"b": "replbody",
}


class ProtocolError(Exception):
    """The milter sent something the protocol does not allow here."""


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The milter's answer to SMFIC_OPTNEG."""

    version: int
    actions: Action
    steps: Step
    macro_lists: Mapping[Stage, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Modification:
    """One change requested at the end of the message."""

    kind: str
    name: str = ""
    value: str = ""
    index: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    """A final answer to an event, with the changes that came before it."""

    verdict: Verdict
    text: str = ""  # the SMTP reply of SMFIR_REPLYCODE
    modifications: tuple[Modification, ...] = ()


# -- encoding ----------------------------------------------------------------


def packet(command: bytes, data: bytes = b"") -> bytes:
    """Return one packet: length, command octet, data."""
    return struct.pack(">I", len(data) + 1) + command + data


def strings(*values: str) -> bytes:
    """Return NUL-terminated strings; surrogate escapes become raw bytes."""
    return b"".join(v.encode("utf-8", "surrogateescape") + b"\0" for v in values)


def optneg(actions: Action = POSTFIX_ACTIONS, steps: Step = POSTFIX_STEPS) -> bytes:
    """Return the MTA's SMFIC_OPTNEG packet."""
    return packet(SMFIC_OPTNEG, struct.pack(">III", VERSION, actions, steps))


def macros(command: bytes, values: Sequence[tuple[str, str]]) -> bytes:
    """Return the SMFIC_MACRO packet for ``command``'s stage."""
    flat = [item for pair in values for item in pair]
    return packet(SMFIC_MACRO, command + strings(*flat))


def connect_data(hostname: str, address: str, port: int) -> bytes:
    """Return SMFIC_CONNECT's data: name, family, port, address."""
    family = b"6" if ipaddress.ip_address(address).version == 6 else b"4"
    return strings(hostname) + family + struct.pack(">H", port) + strings(address)


OPTNEG: Final = optneg()


# -- decoding ----------------------------------------------------------------


def parse_optneg(data: bytes) -> Negotiated:
    """Decode the milter's SMFIC_OPTNEG reply, with any macro lists."""
    if len(data) < 12:
        raise ProtocolError(f"short SMFIC_OPTNEG reply: {len(data)} octets")
    version, actions, steps = struct.unpack(">III", data[:12])
    lists: dict[Stage, tuple[str, ...]] = {}
    rest = data[12:]
    while len(rest) >= 5:
        (stage,) = struct.unpack(">I", rest[:4])
        text, _, rest = rest[4:].partition(b"\0")
        if stage in Stage._value2member_map_:
            lists[Stage(stage)] = tuple(text.decode("ascii", "replace").split())
    return Negotiated(version, Action(actions), Step(steps), lists)


def _fields(data: bytes, count: int) -> list[str]:
    parts = data.split(b"\0")
    if len(parts) < count:
        raise ProtocolError(f"expected {count} strings, got {data!r}")
    return [part.decode("utf-8", "surrogateescape") for part in parts[:count]]


def parse_modification(code: bytes, data: bytes) -> Modification:
    """Decode one end-of-message modification request."""
    kind = MODIFICATIONS[code]
    if kind in ("insheader", "chgheader"):
        (index,) = struct.unpack(">I", data[:4])
        name, value = _fields(data[4:], 2)
        return Modification(kind, name, value, index)
    if kind == "addheader":
        name, value = _fields(data, 2)
        return Modification(kind, name, value)
    if kind == "replbody":
        return Modification(kind, value=data.decode("utf-8", "replace"))
    return Modification(kind, value=_fields(data, 1)[0])


def reply_code_verdict(text: str) -> Verdict:
    """Map an SMFIR_REPLYCODE reply to the verdict its first digit means."""
    if text[:1] == "5":
        return Verdict.REJECT
    if text[:1] == "4":
        return Verdict.TEMPFAIL
    raise ProtocolError(f"SMFIR_REPLYCODE is not a 4xx/5xx reply: {text!r}")
