"""A memo of parsed texts, bounded by the memory its entries cost.

Records and explanations come from anyone's DNS, up to 64 kB each, and a
parsed one costs up to 75 times its text. A memo bounded by a count of
entries is then bounded by nothing a zone owner cannot raise; this one
counts an estimate of each entry's bytes and drops the least recently used
entries when the total passes its bound. An entry that alone costs more
than a quarter of the bound is not kept at all: the text is parsed again
when it is seen again, as a text never seen before would be.

Used from the event loop thread and from libmilter's threads (a check
answered from the DNS cache runs in the callback's thread): a hit is one
atomic dict read and a move to the end; changes take a lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# What a parsed text costs at most, per character of text and per entry
# (measured with tracemalloc: 75 bytes per character for a record of
# "mx:%{d}.x" terms, the worst; 14 for ip4 terms; 28 for explanations).
COST_PER_CHARACTER: Final = 80
COST_PER_ENTRY: Final = 1024
_LARGEST_SHARE: Final = 4  # an entry may take at most 1/4 of the bound


def text_cost(length: int) -> int:
    """Return the bytes a memo entry for a text of ``length`` characters costs."""
    return COST_PER_ENTRY + COST_PER_CHARACTER * length


class SizedMemo(Generic[K, V]):
    """A least-recently-used memo of ``compute(key)``, bounded in bytes."""

    def __init__(
        self,
        compute: Callable[[K], V],
        cost: Callable[[K], int],
        max_bytes: int,
    ) -> None:
        self._compute = compute
        self._cost = cost
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, key: K) -> V:
        """Return ``compute(key)``, from the memo when it is there."""
        entry = self._entries.get(key)
        if entry is not None:
            try:  # noqa: SIM105 - contextlib.suppress costs more on this hot path
                self._entries.move_to_end(key)
            except KeyError:
                pass  # dropped meanwhile by another thread: the value stands
            return entry[0]
        value = self._compute(key)
        self._keep(key, value)
        return value

    def _keep(self, key: K, value: V) -> None:
        cost = self._cost(key)
        if cost * _LARGEST_SHARE > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._entries[key] = (value, cost)
            self.bytes += cost
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
