"""Configuration problems, where they are, and the error that lists them all.

A loader does not stop at the first problem: it reports each one to a
Context (the file and the key being read) and goes on with a default, and
raises one ConfigError with every problem at the end. Pure: no YAML here,
so that ConfigError can be caught without loading a parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

KeyPath = tuple[str | int, ...]

EX_CONFIG: Final = 78  # sysexits.h: the exit status of a configuration error
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MAX_QUOTED: Final = 60  # characters of a bad value echoed in a message


@dataclass(frozen=True, slots=True)
class Mark:
    """A place in a file: 1-based line and column."""

    line: int
    col: int


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a configuration file, and where."""

    path: Path
    mark: Mark | None  # None: the file as a whole (unreadable, misnamed)
    key_path: str  # domains."example.org".mailfrom.fail; "" at the top
    message: str

    def __str__(self) -> str:
        where = str(self.path)
        if self.mark is not None:
            where += f":{self.mark.line}:{self.mark.col}"
        if self.key_path:
            return f"{where}: {self.key_path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is unusable; str() gives one line per problem."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = _in_file_order(problems)
        if not self.problems:
            raise ValueError("a ConfigError needs at least one problem")
        super().__init__("\n".join(str(problem) for problem in self.problems))


def _in_file_order(problems: Iterable[ConfigProblem]) -> tuple[ConfigProblem, ...]:
    """Sort by line within each file; files stay in the order they were read."""
    problems = list(problems)
    files: dict[Path, int] = {}
    for problem in problems:
        files.setdefault(problem.path, len(files))

    def place(problem: ConfigProblem) -> tuple[int, int, int]:
        mark = problem.mark or Mark(0, 0)
        return (files[problem.path], mark.line, mark.col)

    return tuple(sorted(problems, key=place))


def render_key_path(path: KeyPath) -> str:
    """Return ``domains."example.org".mailfrom`` or ``dns.nameservers[0]``."""
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
            continue
        name = segment if _PLAIN_KEY.fullmatch(segment) else json.dumps(segment)
        text += f".{name}" if text else name
    return text


def quote(text: str) -> str:
    """Return ``'text'`` for a message: escaped to one line, cut if long."""
    if len(text) > _MAX_QUOTED:
        text = text[: _MAX_QUOTED - 3] + "..."
    if text.isprintable() and text.isascii():
        return f"'{text}'"
    return json.dumps(text)


class Context:
    """Which file and key are being read, and the list problems go to."""

    __slots__ = ("key_path", "path", "problems")

    def __init__(
        self, path: Path, problems: list[ConfigProblem], key_path: KeyPath = ()
    ) -> None:
        self.path = path
        self.problems = problems
        self.key_path = key_path

    def at(self, *segments: str | int) -> Context:
        """Return the context of a key (or list index) below this one."""
        return Context(self.path, self.problems, self.key_path + segments)

    def report(self, mark: Mark | None, message: str) -> None:
        """Record a problem at ``mark`` under this key path."""
        key_path = render_key_path(self.key_path)
        self.problems.append(ConfigProblem(self.path, mark, key_path, message))
