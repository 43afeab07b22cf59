"""Light tests of the milter protocol client and codec.

The client and codec are tests/helpers/milterclient.py and milterwire.py.

The client drives the real daemon in tests/integration/test_negotiation.py
and in the load benchmark (bench/milterload.py, which checks every
message's result); these tests pin the codec and the session's handling of
the reply types a scripted milter sends.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.milterclient import Endpoint, MilterSession
from helpers.milterwire import (
    SMFIC_BODYEOB,
    SMFIC_DATA,
    SMFIC_EOH,
    SMFIC_HEADER,
    SMFIC_MAIL,
    SMFIC_OPTNEG,
    Modification,
    ProtocolError,
    Stage,
    Step,
    Verdict,
    connect_data,
    macros,
    packet,
    parse_modification,
    parse_optneg,
    reply_code_verdict,
)


def test_packet_has_length_command_and_data() -> None:
    assert packet(b"c") == b"\x00\x00\x00\x01c"
    assert packet(b"H", b"x\0") == b"\x00\x00\x00\x03Hx\0"


def test_macros_are_name_value_pairs_after_the_command() -> None:
    wire = macros(b"C", [("j", "mta"), ("{daemon_addr}", "127.0.0.1")])
    assert wire[4:] == b"DCj\0mta\0{daemon_addr}\x00127.0.0.1\0"


def test_connect_data_names_family_port_and_address() -> None:
    assert connect_data("h", "192.0.2.1", 25) == b"h\x004\x00\x19192.0.2.1\0"
    assert connect_data("h", "2001:db8::1", 25)[2:3] == b"6"


def test_optneg_reply_with_macro_lists() -> None:
    data = struct.pack(">III", 6, 0x31, 0x80)
    data += struct.pack(">I", 0) + b"j {client_addr}\0"
    data += struct.pack(">I", 5) + b"i\0"
    negotiated = parse_optneg(data)
    assert negotiated.steps == Step.NR_HDR
    assert negotiated.macro_lists == {
        Stage.CONNECT: ("j", "{client_addr}"),
        Stage.EOM: ("i",),
    }


def test_short_optneg_reply_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_optneg(b"\0\0\0\x06")


@pytest.mark.parametrize(
    ("code", "data", "expected"),
    [
        (b"h", b"X-A\0v\0", Modification("addheader", "X-A", "v")),
        (b"i", b"\0\0\0\0X-B\0w\0", Modification("insheader", "X-B", "w", 0)),
        (b"m", b"\0\0\0\x02X-C\0\0", Modification("chgheader", "X-C", "", 2)),
        (b"q", b"held\0", Modification("quarantine", value="held")),
    ],
    ids=["addheader", "insheader", "chgheader-delete", "quarantine"],
)
def test_modifications(code: bytes, data: bytes, expected: Modification) -> None:
    assert parse_modification(code, data) == expected


def test_reply_code_verdict_follows_the_first_digit() -> None:
    assert reply_code_verdict("550 5.7.1 no") is Verdict.REJECT
    assert reply_code_verdict("451 4.7.1 later") is Verdict.TEMPFAIL
    with pytest.raises(ProtocolError):
        reply_code_verdict("250 ok")


Script = Callable[[bytes, bytes], list[bytes]]


async def _serve(path: Path, script: Script, done: asyncio.Event) -> asyncio.Server:
    """Serve ``script`` on a unix socket; set ``done`` when the MTA leaves."""

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    (length,) = struct.unpack(">I", await reader.readexactly(4))
                except asyncio.IncompleteReadError:
                    break
                body = await reader.readexactly(length)
                for reply in script(body[:1], body[1:]):
                    writer.write(reply)
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
            done.set()

    return await asyncio.start_unix_server(handle, path=str(path))


def test_session_reads_changes_before_the_decision(tmp_path: Path) -> None:
    """A scripted milter: NR_HDR, reject nothing, insert a field at the end."""

    def script(command: bytes, data: bytes) -> list[bytes]:
        if command == SMFIC_OPTNEG:
            return [packet(b"O", struct.pack(">III", 6, 1, int(Step.NR_HDR)))]
        if command in (b"D", SMFIC_HEADER, b"Q"):  # macros, no-reply, quit
            return []
        if command == SMFIC_BODYEOB:
            return [packet(b"p"), packet(b"i", b"\0\0\0\0X-T\0v\0"), packet(b"c")]
        return [packet(b"c")]

    async def run() -> tuple[object, object, object]:
        done = asyncio.Event()
        server = await _serve(tmp_path / "m.sock", script, done)
        async with server:
            endpoint = Endpoint.parse(f"unix:{tmp_path / 'm.sock'}")
            session = await MilterSession.open(endpoint)
            await session.negotiate()
            mail = await session.event(SMFIC_MAIL, b"<a@b>\0", [("i", "Q1")])
            header = await session.event(SMFIC_HEADER, b"From\0x\0", [])
            end = await session.event(SMFIC_BODYEOB, b"", [])
            session.quit()
            await asyncio.wait_for(done.wait(), 5)
            return mail, header, end

    mail, header, end = asyncio.run(run())
    assert getattr(mail, "verdict", None) is Verdict.CONTINUE
    assert header is None  # no reply awaited: the milter negotiated NR_HDR
    assert getattr(end, "verdict", None) is Verdict.CONTINUE
    assert getattr(end, "modifications", ()) == (
        Modification("insheader", "X-T", "v", 0),
    )


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (Step(0), [SMFIC_MAIL, SMFIC_DATA, SMFIC_EOH, SMFIC_BODYEOB]),
        (Step.NR_EOH, [SMFIC_MAIL, SMFIC_DATA, SMFIC_EOH, SMFIC_BODYEOB]),
        (Step.NOEOH, [SMFIC_MAIL, SMFIC_DATA, SMFIC_BODYEOB]),
    ],
    ids=["answered", "no-reply", "declined"],
)
def test_the_end_of_the_header_goes_before_the_end_of_the_message(
    tmp_path: Path, steps: Step, expected: list[bytes]
) -> None:
    """A message with no header field: the MTA still sends SMFIC_EOH."""
    received: list[bytes] = []

    def script(command: bytes, data: bytes) -> list[bytes]:
        if command == SMFIC_OPTNEG:
            return [packet(b"O", struct.pack(">III", 6, 1, int(steps)))]
        if command in (b"D", b"Q"):  # macros, quit
            return []
        received.append(command)
        if command == SMFIC_EOH and steps & Step.NR_EOH:
            return []
        return [packet(b"c")]

    async def run() -> object:
        done = asyncio.Event()
        server = await _serve(tmp_path / "m.sock", script, done)
        async with server:
            session = await MilterSession.open(Endpoint(path=str(tmp_path / "m.sock")))
            await session.negotiate()
            await session.event(SMFIC_MAIL, b"<a@b>\0", [])
            await session.event(SMFIC_DATA, b"", [])
            end = await asyncio.wait_for(session.event(SMFIC_BODYEOB, b"", []), 5)
            session.quit()
            await asyncio.wait_for(done.wait(), 5)
            return end

    end = asyncio.run(run())
    assert getattr(end, "verdict", None) is Verdict.CONTINUE
    assert received == expected
