"""What check_host() may remember between checks, in an object its caller owns.

Parsing a record, an explain-string or a domain name is a pure function of
its text, and most senders use the same few: a ``Memo`` keeps the answers,
so that a warm check pays a dict lookup for each. It is state all the same,
shared by the checks it is given, so it belongs to an owner that creates
and passes it (the daemon's CheckRunner, one ``spf-milter check`` run), as
the DNS cache does; check_host() without one parses every time.

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

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

from spf_milter.spf.errors import PermError
from spf_milter.spf.explain import parse_explanation
from spf_milter.spf.macro import MacroString
from spf_milter.spf.names import MAX_NAME_LENGTH, labels_fit, normalise_name
from spf_milter.spf.record import Record, select_record

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# What a parsed text costs at most, per character of text and per entry
# (measured with tracemalloc: 75 bytes per character for a record of
# "mx:%{d}.x" terms, the worst; 14 for ip4 terms; 28 for explanations).
COST_PER_CHARACTER: Final = 80
COST_PER_ENTRY: Final = 1024
_LARGEST_SHARE: Final = 4  # an entry may take at most 1/4 of the bound

# What a Memo keeps at most: parsed records and explain-strings, in bytes
# (an estimate, text_cost()); checked names, in entries. The names are of
# at most MAX_NAME_LENGTH + 1 characters (a longer one is refused before
# its memo): 4,096 entries each, under 2 MiB.
RECORD_MEMO_BYTES: Final = 32 * 1024 * 1024
EXPLAIN_MEMO_BYTES: Final = 4 * 1024 * 1024
NAME_MEMO_ENTRIES: Final = 4096


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


def _answer_cost(texts: tuple[bytes, ...]) -> int:
    return text_cost(sum(len(text) for text in texts))


def _explanation_cost(text: str) -> int:
    return text_cost(len(text))


class Memo:
    """The memos of one owner's checks: records, explain-strings, names.

    ``records(texts)`` is record.select_record of a TXT answer: its one
    SPF record parsed, None, or the PermError. The bounds default to the
    daemon's; a bound of 0 keeps nothing (``Memo.keeping_nothing()``).

    On the warm path a memo is called through a local name: CPython 3.11
    does not specialise a call ``obj.attr(...)`` of a callable held in a
    slot, and its generic lookup costs about as much as the memo's hit.
    """

    __slots__ = ("_labels_fit", "_normalise_name", "explanations", "records")

    def __init__(
        self,
        record_bytes: int = RECORD_MEMO_BYTES,
        explanation_bytes: int = EXPLAIN_MEMO_BYTES,
        name_entries: int = NAME_MEMO_ENTRIES,
    ) -> None:
        self.records: SizedMemo[tuple[bytes, ...], Record | PermError | None]
        self.records = SizedMemo(select_record, _answer_cost, record_bytes)
        self.explanations: SizedMemo[str, MacroString | PermError]
        self.explanations = SizedMemo(
            parse_explanation, _explanation_cost, explanation_bytes
        )
        # functools' LRU: a hit costs less than SizedMemo's, and a name's
        # cost is bounded anyway.
        self._normalise_name = functools.lru_cache(maxsize=name_entries)(normalise_name)
        self._labels_fit = functools.lru_cache(maxsize=name_entries)(labels_fit)

    @classmethod
    def keeping_nothing(cls) -> Memo:
        """Return a memo that keeps nothing: every text is parsed each time."""
        return cls(record_bytes=0, explanation_bytes=0, name_entries=0)

    def normalise_domain(self, domain: str) -> str | None:
        """Return ``domain`` ready for check_host(), or None (names.normalise_name).

        A trailing dot is dropped; a name too long for the DNS is refused
        before the memo: an A-label is no shorter than its U-label.
        """
        name = domain[:-1] if domain.endswith(".") else domain
        if len(name) > MAX_NAME_LENGTH:
            return None
        normalise = self._normalise_name  # a local: see the class docstring
        return normalise(name)

    def is_queryable(self, name: str) -> bool:
        """Return whether ``name`` (no trailing dot) can exist in the DNS."""
        if not name or len(name) > MAX_NAME_LENGTH:
            return False
        fit = self._labels_fit  # a local: see the class docstring
        return fit(name)

    def explain_string(self, text: str) -> MacroString:
        """Parse an explain-string (§6.2), once per distinct text; PermError if bad."""
        explanations = self.explanations  # a local: see the class docstring
        parsed = explanations(text)
        if isinstance(parsed, PermError):
            raise PermError(parsed.problem)
        return parsed
