"""One lifecycle for what a test starts and must not leave behind.

A daemon, a DNS server thread, a private Postfix: each is started by a
``with`` block and ended by it, whatever happened in between. ``Managed``
holds that logic once, so every helper gets the same guarantees:

- ``__enter__`` calls ``start()``; if the start fails part way (a process
  launched but never listening, a log thread started before a bind error),
  ``close()`` releases what it had already taken before the error goes on;
- ``__exit__`` calls ``close()``, on success and on failure alike.

A subclass writes ``start()`` and ``stop()``; ``close()`` is ``stop()``
unless the helper holds more than its running part (a work dir to remove)
or ends differently at the close of a block (SIGKILL for a throwaway milter).
``close()`` must work in any state ``start()`` can leave, and twice.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Managed:
    """Start on entering a ``with`` block, close on leaving it or on a failed start."""

    def start(self) -> None:
        """Start, and return once the thing serves; raise if it cannot."""
        raise NotImplementedError

    def stop(self) -> object:
        """Stop what runs; it may be started again (a restart)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop and release everything, in any state; by default ``stop()``."""
        self.stop()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()  # never leave a half-started helper behind
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
