"""Polling with a deadline: the only way the MTA fixtures wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TypeVar

T = TypeVar("T")

POLL_INTERVAL: Final = 0.02


class WaitTimeout(Exception):
    """A condition polled with a deadline did not come true in time."""

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(f"timed out after {timeout:.1f} s waiting for {what}")
        self.what = what
        self.timeout = timeout


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL,
) -> T:
    """Poll ``condition`` until it returns a value other than None or False.

    The condition is always tried once more at the deadline, so a slow
    machine never fails a check that has in fact come true.
    """
    deadline = time.monotonic() + timeout
    while True:
        last_try = time.monotonic() >= deadline
        result = condition()
        if result is not None and result is not False:
            return result
        if last_try:
            raise WaitTimeout(what, timeout)
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
