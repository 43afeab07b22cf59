"""Read YAML into nodes that keep their line and column.

Internal to the configuration loaders (daemonfile.py, policyfile.py, through
fields.py); the one module that imports ``yaml``. Problems go to the
Context of spf_milter.config.problems.
Scalars are constructed exactly as ``yaml.safe_load`` does (so no Python
tags); mappings become YamlMap, whose duplicate keys are problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import yaml

from spf_milter.config.problems import Context, Mark, quote

_MAP_TAG: Final = "tag:yaml.org,2002:map"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Scalar:
    """A scalar: its safe_load value and the text as written ("0660", "yes")."""

    value: object
    text: str
    mark: Mark


@dataclass(frozen=True, slots=True)
class YamlList:
    """A YAML sequence."""

    items: tuple[Node, ...]
    mark: Mark


@dataclass(frozen=True, slots=True)
class Entry:
    """One key of a mapping: the key as written, its place and its value."""

    key: str
    key_mark: Mark
    value: Node


@dataclass(frozen=True, slots=True)
class YamlMap:
    """A YAML mapping without duplicate keys, in file order."""

    entries: tuple[Entry, ...]
    mark: Mark


@dataclass(frozen=True, slots=True)
class Broken:
    """A value that could not be read; its problem is already reported."""

    mark: Mark


Node = Scalar | YamlList | YamlMap | Broken


def _mark(mark: yaml.Mark | None) -> Mark:
    return Mark(1, 1) if mark is None else Mark(mark.line + 1, mark.column + 1)


class MarkedLoader(yaml.SafeLoader):
    """A SafeLoader whose document keeps every key's and value's place."""

    def __init__(self, text: str, context: Context) -> None:
        super().__init__(text)
        self._context = context
        self._done: dict[int, Node] = {}  # by id(): aliases are converted once
        self._active: set[int] = set()

    def read_document(self) -> Node | None:
        """Return the single document as nodes, None if it is empty."""
        node = self.get_single_node()
        return None if node is None else self._convert(node, self._context)

    def _convert(self, node: yaml.Node, context: Context) -> Node:
        done = self._done.get(id(node))
        if done is not None:
            return done
        if id(node) in self._active:
            context.report(_mark(node.start_mark), "an alias may not contain itself")
            return Broken(_mark(node.start_mark))
        self._active.add(id(node))
        try:
            result = self._convert_new(node, context)
        finally:
            self._active.discard(id(node))
        self._done[id(node)] = result
        return result

    def _convert_new(self, node: yaml.Node, context: Context) -> Node:
        mark = _mark(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, context)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            items = (
                self._convert(item, context.at(i)) for i, item in enumerate(node.value)
            )
            return YamlList(tuple(items), mark)
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            return YamlMap(self._entries(node, context), mark)
        context.report(mark, f"unsupported YAML tag {quote(node.tag)}")
        return Broken(mark)

    def _scalar(self, node: yaml.ScalarNode, context: Context) -> Node:
        mark = _mark(node.start_mark)
        if node.tag not in self.yaml_constructors:
            context.report(mark, f"unsupported YAML tag {quote(node.tag)}")
            return Broken(mark)
        try:
            value = self.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:
            problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else exc
            context.report(mark, f"invalid {node.tag} value: {problem}")
            return Broken(mark)
        return Scalar(value, node.value, mark)

    def _entries(self, node: yaml.MappingNode, context: Context) -> tuple[Entry, ...]:
        entries: dict[str, Entry] = {}
        merged: list[Entry] = []
        for key_node, value_node in node.value:
            key_mark = _mark(key_node.start_mark)
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merged(value_node, context))
            elif not isinstance(key_node, yaml.ScalarNode):
                context.report(key_mark, "a key must be a string, not a collection")
            elif key_node.value in entries:
                first = entries[key_node.value].key_mark
                context.report(
                    key_mark,
                    f"duplicate key {quote(key_node.value)}"
                    f" (first at line {first.line}, column {first.col})",
                )
            else:
                value = self._convert(value_node, context.at(key_node.value))
                entries[key_node.value] = Entry(key_node.value, key_mark, value)
        for entry in merged:  # YAML merge keys: explicit keys win, then first
            entries.setdefault(entry.key, entry)
        return tuple(entries.values())

    def _merged(self, node: yaml.Node, context: Context) -> list[Entry]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        entries: list[Entry] = []
        for source in sources:
            converted = self._convert(source, context)
            if isinstance(converted, YamlMap):
                entries.extend(converted.entries)
            else:
                context.report(converted.mark, "'<<' can only merge mappings")
        return entries


def _text_mark(text: str, index: int) -> Mark:
    line_start = text.rfind("\n", 0, index) + 1
    return Mark(text.count("\n", 0, index) + 1, index - line_start + 1)


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    message = f"invalid YAML: {exc.problem or exc.context}"
    if exc.context and exc.problem and exc.context_mark is not None:
        place = _mark(exc.context_mark)
        message += f" ({exc.context} at line {place.line}, column {place.col})"
    return message


def read_yaml(context: Context) -> Node | None:
    """Return the document in ``context.path`` as nodes.

    Return None for an empty document and for an unreadable file or invalid
    YAML, whose problem is then reported.
    """
    try:
        data = context.path.read_bytes()
    except OSError as exc:
        context.report(None, f"cannot read file: {exc.strerror or exc}")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        mark = _text_mark(before, len(before))
        context.report(mark, f"not UTF-8: byte 0x{data[exc.start]:02x}")
        return None
    try:
        loader = MarkedLoader(text, context)
    except yaml.reader.ReaderError as exc:
        mark = _text_mark(text, exc.position)
        context.report(
            mark, f"invalid YAML: character U+{exc.character:04X} is not allowed"
        )
        return None
    try:
        return loader.read_document()
    except yaml.MarkedYAMLError as exc:
        context.report(_mark(exc.problem_mark), _syntax_message(exc))
        return None
    finally:
        loader.dispose()
