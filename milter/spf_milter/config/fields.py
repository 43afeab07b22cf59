"""Read marked YAML nodes into typed values, one key at a time.

Internal to the configuration loaders: Fields walks one mapping, rejecting
unknown keys and collecting a problem for each refused value; the ``as_*``
parsers turn one node into one value or raise ValueError with the message.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import ipaddress
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Final, TypeVar

from spf_milter.config.problems import Context, Mark, quote
from spf_milter.config.yamlnodes import Broken, Entry, Node, Scalar, YamlList, YamlMap
from spf_milter.headers import TOKEN

T = TypeVar("T")
E = TypeVar("E", bound=enum.StrEnum)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")  # POSIX user/group
_MODE = re.compile(r"(0o?)?[0-7]{1,4}")
_KIND_NAMES: Final[tuple[tuple[type, str], ...]] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (datetime.date, "a date"),
    (bytes, "binary data"),
)


def describe(node: Node) -> str:
    """Name the kind of a node for "expected a list, got a string"."""
    if isinstance(node, YamlMap):
        return "a mapping"
    if isinstance(node, YamlList):
        return "a list"
    if isinstance(node, Broken):
        return "an invalid value"
    if node.value is None:
        return "an empty value"
    for kind, name in _KIND_NAMES:  # bool first: it is an int too
        if isinstance(node.value, kind):
            return name
    return f"a {type(node.value).__name__}"


def unknown_key_message(key: str, allowed: Collection[str]) -> str:
    """Return ``unknown key 'x'; did you mean 'y'? (expected one of …)``."""
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return (
        f"unknown key {quote(key)}{hint} (expected one of {', '.join(sorted(allowed))})"
    )


def as_str(node: Node) -> str:
    """Return a string value; raise ValueError for anything else."""
    if isinstance(node, Scalar) and isinstance(node.value, str):
        return node.value
    raise ValueError(f"expected a string, got {describe(node)}")


def as_text(node: Node) -> str:
    """Return a scalar's text as written, whatever YAML typed it as."""
    if isinstance(node, Scalar) and node.value is not None:
        return node.text
    raise ValueError(f"expected a string, got {describe(node)}")


def as_bool(node: Node) -> bool:
    """Return a boolean (true/false, yes/no, on/off)."""
    if isinstance(node, Scalar) and isinstance(node.value, bool):
        return node.value
    raise ValueError(f"expected true or false, got {describe(node)}")


def as_number(node: Node) -> float:
    """Return an integer or decimal number as a float."""
    value = node.value if isinstance(node, Scalar) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"expected a number, got {describe(node)}")


def as_network(node: Node) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Return an IPv4 or IPv6 network; host bits may be set (192.0.2.1/24).

    The text is taken as written: YAML 1.1 would read 1:2:3:4:5:6:7:8 as a
    base-60 integer.
    """
    text = as_text(node)
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"{quote(text)} is not an IPv4 or IPv6 network"
            " (e.g. 192.0.2.0/24, 2001:db8::/32, 192.0.2.7)"
        ) from None


def as_choice(choices: type[E], what: str = "value") -> Callable[[Node], E]:
    """Return a parser of one of the values of the StrEnum ``choices``.

    An unknown word is reported as an unknown ``what``.
    """

    def parse(node: Node) -> E:
        word = as_str(node)
        try:
            return choices(word)
        except ValueError:
            expected = ", ".join(str(choice) for choice in choices)
            raise ValueError(
                f"unknown {what} {quote(word)} (expected {expected})"
            ) from None

    return parse


def as_name(node: Node) -> str:
    """Return a POSIX user or group name (checked to exist at start-up)."""
    text = as_str(node)
    if not _NAME.fullmatch(text):
        raise ValueError(f"{quote(text)} is not a user or group name")
    return text


def as_token(node: Node) -> str:
    """Return an RFC 2045 token, as an RFC 8601 authserv-id or host name."""
    text = as_str(node)
    if not TOKEN.fullmatch(text):
        raise ValueError(f"{quote(text)} is not a host name or RFC 8601 authserv-id")
    return text


def as_mode(node: Node) -> int:
    """Return a file mode written in octal: "0660", 0660, 660 or 0o660."""
    text = as_text(node)  # as written: YAML 1.1 reads an unquoted 0660 as 432
    if not _MODE.fullmatch(text) or int(text.removeprefix("0o"), 8) > 0o777:
        raise ValueError(f'{quote(text)} is not an octal file mode such as "0660"')
    return int(text.removeprefix("0o"), 8)


def as_path(base_dir: Path, node: Node) -> Path:
    """Return a path; a relative one is taken relative to ``base_dir``."""
    text = as_str(node)
    if not text:
        raise ValueError("expected a path, got an empty string")
    return base_dir / text


def as_absolute_path(node: Node) -> Path:
    """Return an absolute path."""
    path = Path(as_str(node))
    if not path.is_absolute():
        raise ValueError(f"{quote(str(path))} is not an absolute path")
    return path


def as_seconds(limit: float, node: Node) -> float:
    """Return a duration in seconds, above 0 and at most ``limit``."""
    seconds = as_number(node)
    if not 0 < seconds <= limit:
        raise ValueError(
            f"expected seconds above 0 and at most {limit:g}, got {seconds:g}"
        )
    return seconds


def as_count(limit: int, node: Node) -> int:
    """Return a whole number from 0 to ``limit``."""
    value = as_number(node)
    if not value.is_integer() or not 0 <= value <= limit:
        raise ValueError(f"expected a whole number from 0 to {limit}, got {value:g}")
    return int(value)


def as_duration(limit: float, node: Node) -> float:
    """Return a duration in seconds from 0 to ``limit``."""
    seconds = as_number(node)
    if not 0 <= seconds <= limit:
        raise ValueError(f"expected seconds from 0 to {limit:g}, got {seconds:g}")
    return seconds


class Fields:
    """The keys of one YAML mapping, read one by one with a parser each.

    Unknown keys are reported when the reader is made. A value its parser
    refuses (ValueError) is reported at its line and column under its key
    path and replaced by the default, so that one run finds every problem.
    A missing or empty (null) mapping reads as one with no keys.
    """

    __slots__ = ("_entries", "context", "mark")

    def __init__(
        self, context: Context, node: Node | None, allowed: Collection[str] | None
    ) -> None:
        self.context = context
        self.mark = None if node is None else node.mark
        self._entries: dict[str, Entry] = {}
        if node is None or isinstance(node, Broken):
            return
        if isinstance(node, Scalar) and node.value is None:
            return
        if not isinstance(node, YamlMap):
            context.report(node.mark, f"expected a mapping, got {describe(node)}")
            return
        for entry in node.entries:
            if allowed is None or entry.key in allowed:
                self._entries[entry.key] = entry
            else:
                context.report(entry.key_mark, unknown_key_message(entry.key, allowed))

    def names(self) -> list[str]:
        """Return the (known) keys present, in file order."""
        return list(self._entries)

    def has(self, key: str) -> bool:
        """Tell whether ``key`` is present."""
        return key in self._entries

    def node(self, key: str) -> Node | None:
        """Return the value node of ``key``, None if absent."""
        entry = self._entries.get(key)
        return None if entry is None else entry.value

    def key_mark(self, key: str) -> Mark:
        """Return where ``key`` itself is written."""
        return self._entries[key].key_mark

    def report(self, key: str, message: str) -> None:
        """Record a problem about the value of ``key``."""
        self.context.at(key).report(self._entries[key].value.mark, message)

    def get(self, key: str, parse: Callable[[Node], T], default: T) -> T:
        """Return ``parse(value)``, or ``default`` if absent or refused."""
        entry = self._entries.get(key)
        if entry is None or isinstance(entry.value, Broken):
            return default
        try:
            return parse(entry.value)
        except ValueError as exc:
            self.context.at(key).report(entry.value.mark, str(exc))
            return default

    def items(
        self, key: str, parse: Callable[[Node], T], default: tuple[T, ...]
    ) -> tuple[T, ...]:
        """Return a list value with ``parse`` applied to each item."""
        entry = self._entries.get(key)
        if entry is None or isinstance(entry.value, Broken):
            return default
        if not isinstance(entry.value, YamlList):
            hint = (
                " (write [] for an empty list)"
                if describe(entry.value) == "an empty value"
                else ""
            )
            self.report(key, f"expected a list, got {describe(entry.value)}{hint}")
            return default
        values: list[T] = []
        for index, item in enumerate(entry.value.items):
            if isinstance(item, Broken):
                continue
            try:
                values.append(parse(item))
            except ValueError as exc:
                self.context.at(key, index).report(item.mark, str(exc))
        return tuple(values)

    def sub(self, key: str, allowed: Collection[str] | None) -> Fields:
        """Return the reader of the mapping under ``key``."""
        return Fields(self.context.at(key), self.node(key), allowed)
