"""Replay a delivered message to a milter, as the next milter in the chain sees it.

Sendmail's test fixture wires one milter (README.md's line); to show a
milter that runs after ours (OpenDMARC) a message Sendmail delivered, this
module opens a milter session of its own (tests/helpers/milterclient.py) and sends
the envelope and every header field of the delivered file but the delivery
agent's ``Return-Path:``, in order, with the ``i`` macro (the queue id)::

    changes = replay(socket, delivery, Envelope("127.0.0.10", "h.test", ...))
    [c.value for c in changes if c.name == "Authentication-Results"]
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from helpers.milterclient import Endpoint, MilterSession
from helpers.milterwire import (
    SMFIC_BODY,
    SMFIC_BODYEOB,
    SMFIC_CONNECT,
    SMFIC_DATA,
    SMFIC_EOH,
    SMFIC_HEADER,
    SMFIC_HELO,
    SMFIC_MAIL,
    SMFIC_RCPT,
    Modification,
    connect_data,
    strings,
)

if TYPE_CHECKING:
    from mta.delivery import Delivery
    from mta.milterprocess import MilterSocket

REPLAY_TIMEOUT: Final = 30.0
DELIVERY_FIELDS: Final = frozenset({b"return-path"})  # added after the milters


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP facts of the session the message came in."""

    client_ip: str
    helo: str
    mail_from: str
    rcpt_to: str


def header_fields(delivery: Delivery) -> list[tuple[str, str]]:
    """Return the delivered header's (name, value) pairs as an MTA sends them."""
    fields: list[tuple[str, str]] = []
    for raw in delivery.raw_header.rstrip(b"\n").split(b"\n"):
        if raw[:1] in (b" ", b"\t") and fields:
            name, value = fields.pop()
            fields.append((name, value + "\n" + raw.decode("utf-8", "surrogateescape")))
            continue
        name, _, value = raw.partition(b":")
        fields.append(
            (name.decode("ascii", "replace"), value.decode("utf-8", "surrogateescape"))
        )
    return [
        (name, value.removeprefix(" "))
        for name, value in fields
        if name.lower().encode() not in DELIVERY_FIELDS
    ]


def replay(
    milter_socket: MilterSocket, delivery: Delivery, envelope: Envelope
) -> tuple[Modification, ...]:
    """Send ``delivery`` to the milter; return the changes it asks for."""
    path = str(milter_socket.path)
    return asyncio.run(
        asyncio.wait_for(_replay(path, delivery, envelope), REPLAY_TIMEOUT)
    )


async def _replay(
    path: str, delivery: Delivery, envelope: Envelope
) -> tuple[Modification, ...]:
    session = await MilterSession.open(Endpoint(path=path))
    queue_id = [("i", delivery.queue_id)]
    try:
        await session.negotiate()
        ip = envelope.client_ip
        await session.event(SMFIC_CONNECT, connect_data(f"[{ip}]", ip, 25), [])
        await session.event(SMFIC_HELO, strings(envelope.helo), [])
        await session.event(SMFIC_MAIL, strings(f"<{envelope.mail_from}>"), queue_id)
        await session.event(SMFIC_RCPT, strings(f"<{envelope.rcpt_to}>"), queue_id)
        await session.event(SMFIC_DATA, b"", queue_id)
        for name, value in header_fields(delivery):
            await session.event(SMFIC_HEADER, strings(name, value), queue_id)
        await session.event(SMFIC_EOH, b"", queue_id)
        body = delivery.raw[len(delivery.raw_header) :].lstrip(b"\n")
        await session.event(SMFIC_BODY, body.replace(b"\n", b"\r\n"), queue_id)
        reply = await session.event(SMFIC_BODYEOB, b"", queue_id)
    finally:
        session.quit()
    return () if reply is None else reply.modifications
