"""One asyncio event loop in its own thread, shared by every SMTP connection.

libmilter calls the callbacks on one thread per connection; the SPF checks
are coroutines. Every check that needs the DNS runs on this one loop (the
check runner, runner.py, answers a warm one from the cache at once), so the
HELO and MAIL FROM checks of a transaction, and the checks of all
connections, overlap their DNS queries. The runner submits a coroutine; the
transaction flow later waits for its result with a bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

START_TIMEOUT: Final = 5.0  # seconds


class EventLoop:
    """An asyncio loop running in a daemon thread until stop()."""

    def __init__(self, name: str = "spf-checks") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        """Start the loop thread and wait until it runs."""
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise RuntimeError("the event loop thread did not start")

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; return a future any thread can wait on."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what still runs, stop the loop and wait for its thread."""
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._cancel_all)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("event loop thread did not stop within %.1f s", timeout)

    def _cancel_all(self) -> None:
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        waiting = asyncio.gather(*tasks, return_exceptions=True)
        waiting.add_done_callback(lambda _: self._loop.stop())

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()
