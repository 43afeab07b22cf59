"""service.Traffic: what a stop waits for before the daemon exits."""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass

from spf_milter.service import Traffic

WAIT = 10.0  # seconds: generous bound of every wait


@dataclass(eq=False)  # hashable by identity, as WeakSet needs
class FakeSession:
    in_transaction: bool = False


def test_idle_traffic_needs_no_wait() -> None:
    assert Traffic().wait_idle(0)


def test_a_running_callback_is_waited_for() -> None:
    traffic = Traffic()
    entered, release = threading.Event(), threading.Event()

    def callback() -> int:
        entered.set()
        release.wait(WAIT)
        return 0

    caller = threading.Thread(target=traffic.call, args=(callback,))
    caller.start()
    assert entered.wait(WAIT)
    assert not traffic.wait_idle(0)
    release.set()
    assert traffic.wait_idle(WAIT)
    caller.join(WAIT)


def test_an_open_transaction_is_waited_for_until_a_callback_ends_it() -> None:
    traffic = Traffic()
    session = traffic.opened(FakeSession(in_transaction=True))
    assert traffic.transactions() == 1
    assert not traffic.wait_idle(0)

    def end_of_message() -> int:
        session.in_transaction = False
        return 0

    ender = threading.Thread(target=traffic.call, args=(end_of_message,))
    ender.start()
    assert traffic.wait_idle(WAIT)
    ender.join(WAIT)
    assert traffic.transactions() == 0


def test_a_closed_session_is_forgotten() -> None:
    traffic = Traffic()
    traffic.opened(FakeSession(in_transaction=True))
    gc.collect()
    assert traffic.transactions() == 0
