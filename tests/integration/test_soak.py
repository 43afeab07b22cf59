"""Soak: concurrent SMTP sessions through a real Postfix, every message accounted for.

Concurrent clients send a mix of all record shapes for a bounded time (and
count) through a private Postfix wired to the real daemon. Every message
must end as expected: delivered once (tagged) or refused at RCPT with the
expected code; none lost, none duplicated, no SMTP error. The daemon's RSS
and open descriptors are sampled; after the warm-up they must stay flat.

CI runs a short slice (SPF_SOAK_SECONDS=30, 50 clients). The long run of
the issue: ``SPF_SOAK_SECONDS=600 SPF_SOAK_CLIENTS=200 scripts/test -k soak -s``.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.milterdaemon import MilterDaemon
from mta.common import make_public_dir
from mta.postfix import PostfixInstance
from mta.smtp import send

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("SPF_SOAK_SECONDS", "30"))
CLIENTS = int(os.environ.get("SPF_SOAK_CLIENTS", "50"))
MAX_MESSAGES = 1_000_000  # a hard stop whatever the clock says
SAMPLE_EVERY = max(SECONDS / 10, 2.0)

ZONE = """\
$TTL 3600
$ORIGIN soak.test.
pass       TXT "v=spf1 ip4:127.0.0.0/24 -all"
chain      TXT "v=spf1 include:_a.chain.soak.test -all"
_a.chain   TXT "v=spf1 ip4:198.51.100.0/24 include:_b.chain.soak.test ~all"
_b.chain   TXT "v=spf1 ip6:2001:db8::/32 ip4:127.0.0.0/25 ~all"
mx         TXT "v=spf1 mx -all"
mx         MX  10 mx1
mx         MX  20 mx2
mx1        A   192.0.2.1
mx2        A   127.0.0.30
a          TXT "v=spf1 a -all"
a          A   127.0.0.40
fail       TXT "v=spf1 -all"
soft       TXT "v=spf1 ~all"
nospf      A   192.0.2.9
broken     TXT "v=spf1 ip4:300.0.0.1 -all"
"""


@dataclass(frozen=True)
class Shape:
    sender: str
    source: str
    refused: bool  # the default policy rejects only a MAIL FROM fail


SHAPES = (
    Shape("a@pass.soak.test", "127.0.0.10", refused=False),
    Shape("a@chain.soak.test", "127.0.0.11", refused=False),
    Shape("a@mx.soak.test", "127.0.0.30", refused=False),
    Shape("a@a.soak.test", "127.0.0.40", refused=False),
    Shape("a@fail.soak.test", "127.0.0.12", refused=True),
    Shape("a@soft.soak.test", "127.0.0.13", refused=False),
    Shape("a@nospf.soak.test", "127.0.0.14", refused=False),
    Shape("a@broken.soak.test", "127.0.0.15", refused=False),
)


@dataclass
class Tally:
    """What the clients saw; guarded by ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    expected_ids: set[str] = field(default_factory=set)
    refused: int = 0
    errors: list[str] = field(default_factory=list)


def _client(port: int, number: int, deadline: float, tally: Tally) -> None:
    for count in range(MAX_MESSAGES):
        if time.monotonic() >= deadline:
            return
        shape = SHAPES[(number + count) % len(SHAPES)]
        try:
            result = send(
                port,
                source=shape.source,
                helo="client.soak.test",
                mail_from=shape.sender,
                rcpt_to=["u@dest.test"],
                timeout=60,
            )
        except (OSError, TimeoutError) as error:
            with tally.lock:
                tally.errors.append(f"{shape.sender}: {error!r}")
            continue
        _account(tally, shape, result)


def _account(tally: Tally, shape: Shape, result: object) -> None:
    reply = result.rcpt.get("u@dest.test")  # type: ignore[attr-defined]
    with tally.lock:
        tally.sent += 1
        if shape.refused and reply is not None and reply.code == 550:
            tally.refused += 1
        elif not shape.refused and result.accepted:  # type: ignore[attr-defined]
            tally.expected_ids.add(result.message_id)  # type: ignore[attr-defined]
        else:
            tally.errors.append(f"{shape.sender}: {reply} / {result}")


def _sample(pid: int) -> tuple[int, int]:
    """Return (RSS in kB, open descriptors) of process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(
        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
    )
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))


@pytest.fixture
def soak_daemon() -> Iterator[MilterDaemon]:
    work_dir = make_public_dir("spf-milter-soak-")
    with DnsServer(Zone.from_text(ZONE)) as dns:
        daemon = MilterDaemon(
            work_dir,
            config="trusted_networks: [127.0.0.1/32]\n",
            policy="",
            nameserver=f"127.0.0.1:{dns.port}",
            unix_socket=True,
        )
        try:
            with daemon:
                yield daemon
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)


def test_soak_every_message_accounted_for_and_memory_flat(
    postfix_session: PostfixInstance, soak_daemon: MilterDaemon
) -> None:
    postfix_session.reset(
        milter=soak_daemon.milter_spec,
        main_cf={"default_process_limit": str(CLIENTS + 20)},
    )
    assert soak_daemon.process is not None
    pid = soak_daemon.process.pid
    tally, samples = Tally(), [(0.0, *_sample(pid))]
    start = time.monotonic()
    deadline = start + SECONDS
    clients = [
        threading.Thread(
            target=_client, args=(postfix_session.port, n, deadline, tally)
        )
        for n in range(CLIENTS)
    ]
    for thread in clients:
        thread.start()
    while any(thread.is_alive() for thread in clients):
        time.sleep(SAMPLE_EVERY)  # sampling pace, not synchronisation
        samples.append((time.monotonic() - start, *_sample(pid)))
    for thread in clients:
        thread.join(60)
    print(
        f"\nsoak: {tally.sent} messages in {SECONDS:g} s from {CLIENTS} clients,"
        f" {len(tally.expected_ids)} accepted, {tally.refused} refused,"
        f" {len(tally.errors)} errors"
    )
    print("  seconds   RSS kB   fds")
    for seconds, rss, fds in samples:
        print(f"  {seconds:7.1f} {rss:8d} {fds:5d}")
    drained = _settle(postfix_session, tally)
    print(f"  every accepted message delivered once, {drained:.0f} s after the load")
    assert tally.errors == [], tally.errors[:5]
    assert tally.sent > CLIENTS
    _assert_flat(samples)


def _settle(postfix: PostfixInstance, tally: Tally) -> float:
    """Wait until every accepted message is delivered, once; none extra.

    Postfix may accept faster than its sink delivers: wait while deliveries
    progress (bounded), and return how long the queue took to drain.
    """
    start = time.monotonic()
    deadline, count, progress = start + max(120.0, 2 * SECONDS), -1, start
    while True:
        delivered = Counter(
            d.message.get("Message-ID", "") for d in postfix.delivered()
        )
        missing = tally.expected_ids - set(delivered)
        now = time.monotonic()
        if len(delivered) != count:
            count, progress = len(delivered), now
        if not missing or now > deadline or now - progress > 60:
            break
        time.sleep(2.0)  # polling pace while the queue drains
    assert missing == set(), f"{len(missing)} accepted messages never delivered"
    duplicated = [
        mid for mid, n in delivered.items() if n > 1 and mid in tally.expected_ids
    ]
    assert duplicated == []
    for delivery in postfix.delivered():
        if delivery.message.get("Message-ID") in tally.expected_ids:
            assert len(delivery.raw_fields("Received-SPF")) == 1
    return time.monotonic() - start


def _assert_flat(samples: list[tuple[float, int, int]]) -> None:
    """After the warm-up (first third), RSS grows < 20% and fds by < 10."""
    warm = samples[max(1, len(samples) // 3)]
    last = samples[-1]
    assert last[1] < warm[1] * 1.2 + 2048, samples
    assert last[2] <= warm[2] + 10, samples
    assert max(rss for _, rss, _ in samples) < 150 * 1024, samples
