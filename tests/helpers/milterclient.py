"""A small asyncio client of the Sendmail milter protocol, version 6.

It speaks to a milter the way Postfix's milter8 client does (read from
libmilter's mfdef.h and Postfix's milter8.c; no code copied):

- one connection per SMTP session; SMFIC_OPTNEG first, offering every
  action Postfix offers (0x1FF) and every protocol step of version 6
  (0x1FFFFF); the milter's answer may carry macro lists (SMFIF_SETSYMLIST)
  that replace Postfix's default list for that stage;
- before each event an SMFIC_MACRO packet with the stage's macros, sent
  even when the milter asked not to get the event itself (SMFIP_NO*);
- the end of the header (SMFIC_EOH) before the body and the end of the
  message, whether or not the message has a header field: a caller that
  leaves it out gets it sent for it, as the MTA would (milter8.c sends it
  unless the milter declined it, and so does Sendmail);
- no reply is awaited for an event the milter answers with no reply
  (SMFIP_NR_*); packets are coalesced and written once before each reply
  is awaited, as Postfix's VSTREAM does (so no Nagle stall on inet:);
- at the end of the message, modification requests (addheader, insheader,
  chgheader, quarantine, ...) arrive before the final reply;
- a message refused before its end is aborted (SMFIC_ABORT); a
  connection-level decision (at connect or HELO) ends the session.

The wire format and its codec are in tests/helpers/milterwire.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from helpers.milterwire import (
    EVENTS,
    MAX_PACKET,
    MODIFICATIONS,
    OPTNEG,
    POSTFIX_ACTIONS,
    SMFIC_ABORT,
    SMFIC_BODY,
    SMFIC_BODYEOB,
    SMFIC_EOH,
    SMFIC_MAIL,
    SMFIC_OPTNEG,
    SMFIC_QUIT,
    SMFIR_PROGRESS,
    SMFIR_REPLYCODE,
    VERDICTS,
    VERSION,
    Action,
    Modification,
    Negotiated,
    ProtocolError,
    Reply,
    Stage,
    Step,
    Verdict,
    macros,
    packet,
    parse_modification,
    parse_optneg,
    reply_code_verdict,
)

# -- the session ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the milter listens: a unix socket path or a TCP host and port."""

    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, spec: str) -> Endpoint:
        """Parse ``unix:/path`` or ``inet:HOST:PORT`` (Postfix's spelling)."""
        kind, _, rest = spec.partition(":")
        if kind in ("unix", "local"):
            return cls(path=rest)
        if kind == "inet":
            host, _, port = rest.rpartition(":")
            return cls(host=host.strip("[]"), port=int(port))
        raise ValueError(f"not a milter endpoint: {spec!r}")

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path else f"inet:{self.host}:{self.port}"


class _Packets(asyncio.Protocol):
    """Split the milter's byte stream into packets; wake the one reader."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.packets: deque[bytes] = deque()
        self.lost: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 4:
            length = int.from_bytes(buffer[:4], "big")
            if not 1 <= length <= MAX_PACKET:
                self._fail(ProtocolError(f"bad packet length {length}"))
                return
            if len(buffer) < 4 + length:
                break
            self.packets.append(bytes(buffer[4 : 4 + length]))
            del buffer[: 4 + length]
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or EOFError("the milter closed the connection"))

    def _fail(self, error: BaseException) -> None:
        self.lost = error
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class MilterSession:
    """One MTA-side milter connection."""

    def __init__(self, transport: asyncio.Transport, packets: _Packets) -> None:
        self._transport = transport
        self._packets = packets
        self._pending = bytearray()
        self.negotiated = Negotiated(VERSION, Action(0), Step(0))
        self._steps = 0  # the negotiated steps as a plain int, for speed
        self._header_ended = False  # SMFIC_EOH sent for the current message
        self.replies_awaited = 0  # events the MTA waited on (OPTNEG not counted)

    @classmethod
    async def open(cls, endpoint: Endpoint) -> MilterSession:
        """Connect to ``endpoint`` (no TCP_NODELAY: Postfix sets none)."""
        loop = asyncio.get_running_loop()
        if endpoint.path:
            transport, packets = await loop.create_unix_connection(
                _Packets, endpoint.path
            )
        else:
            transport, packets = await loop.create_connection(
                _Packets, endpoint.host, endpoint.port, family=socket.AF_INET
            )
        return cls(transport, packets)

    async def negotiate(self) -> Negotiated:
        """Send SMFIC_OPTNEG as Postfix does and read the milter's terms."""
        self._pending += OPTNEG
        code, data = await self._read()
        if code != SMFIC_OPTNEG:
            raise ProtocolError(f"expected SMFIC_OPTNEG, got {code!r}")
        self.negotiated = parse_optneg(data)
        self._steps = int(self.negotiated.steps)
        if self.negotiated.actions & ~POSTFIX_ACTIONS:
            raise ProtocolError(f"actions not offered: {self.negotiated.actions!r}")
        return self.negotiated

    def macro_names(self, stage: Stage, defaults: tuple[str, ...]) -> tuple[str, ...]:
        """Return the macro names to send at ``stage`` (the milter's list wins)."""
        return self.negotiated.macro_lists.get(stage, defaults)

    async def event(
        self, command: bytes, data: bytes, stage_macros: Sequence[tuple[str, str]]
    ) -> Reply | None:
        """Send one event with its macros; return the reply, None if none is due.

        A body chunk or the end of the message sends the end of the header
        first if the caller did not (no macros); should the milter decide
        the message there, that decision is the reply and nothing more is sent.
        """
        if command in (SMFIC_BODY, SMFIC_BODYEOB) and not self._header_ended:
            decided = await self.event(SMFIC_EOH, b"", ())
            if decided is not None and decided.verdict is not Verdict.CONTINUE:
                self._header_ended = False
                return decided
        self._header_ended = command == SMFIC_EOH or (
            self._header_ended and command not in (SMFIC_MAIL, SMFIC_BODYEOB)
        )
        event = EVENTS[command]
        self._pending += macros(command, stage_macros)
        if event.skip and self._steps & event.skip:
            return None
        self._pending += packet(command, data)
        if event.no_reply and self._steps & event.no_reply:
            return None
        return await self._reply(final=command == SMFIC_BODYEOB)

    async def _reply(self, *, final: bool) -> Reply:
        """Read replies until a decision; collect modifications at the end."""
        self.replies_awaited += 1
        changes: list[Modification] = []
        while True:
            code, data = await self._read()
            if code == SMFIR_PROGRESS:
                continue
            if code in VERDICTS and not data:
                return Reply(VERDICTS[code], modifications=tuple(changes))
            if code == SMFIR_REPLYCODE:
                text = data.rstrip(b"\0").decode("utf-8", "replace")
                return Reply(reply_code_verdict(text), text, tuple(changes))
            if final and code in MODIFICATIONS:
                changes.append(parse_modification(code, data))
                continue
            raise ProtocolError(f"unexpected reply {code!r} ({len(data)} octets)")

    async def unasked(self, wait: float) -> int:
        """Return how many packets the milter sent that nothing asked for.

        Waits ``wait`` seconds first, for a stray answer still on its way.
        """
        self._flush()
        await asyncio.sleep(wait)
        return len(self._packets.packets)

    def abort(self) -> None:
        """Queue SMFIC_ABORT (no reply): the message ends before its end."""
        self._header_ended = False
        self._pending += packet(SMFIC_ABORT)

    def quit(self) -> None:
        """Send SMFIC_QUIT and close the connection (the kernel sends it on)."""
        self._pending += packet(SMFIC_QUIT)
        self._flush()
        self.close()

    def close(self) -> None:
        """Close the connection without a word."""
        self._transport.close()

    async def _read(self) -> tuple[bytes, bytes]:
        self._flush()
        packets = self._packets
        while not packets.packets:
            if packets.lost is not None:
                raise packets.lost
            packets.waiter = asyncio.get_running_loop().create_future()
            await packets.waiter
        body = packets.packets.popleft()
        return body[:1], body[1:]

    def _flush(self) -> None:
        if self._pending:
            self._transport.write(bytes(self._pending))
            self._pending.clear()
