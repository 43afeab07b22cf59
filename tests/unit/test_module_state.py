"""No module of the package keeps mutable state at module level (house style).

A module-level set, dict, list, counter or cache is shared by every
connection and every test in the process, and survives a reload: state
belongs to objects that are created and passed (the Service, a CheckRunner,
a connection's Flow). Constant tables are not state: tuples, frozensets,
``__all__``, and lookup tables written out in full and marked ``Final``. An
empty container, or one built by a call (``set()``, ``itertools.count()``,
``threading.local()``), exists only to be changed: it is state, Final or not.
So is a memo, even of a pure function: a ``SizedMemo`` or a function (or
method) decorated with ``functools.lru_cache`` or ``functools.cache`` at
module or class level holds what every check has seen. The engine's memos
belong to an ``spf.Memo`` that check_host() is given.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "milter" / "spf_milter"

MUTABLE_DISPLAYS = (
    ast.List,
    ast.Dict,
    ast.Set,
    ast.ListComp,
    ast.DictComp,
    ast.SetComp,
)
MEMOS = frozenset({"lru_cache", "cache", "SizedMemo"})
MUTABLE_CALLS = frozenset(
    {
        *("list", "dict", "set", "bytearray", "defaultdict", "OrderedDict"),
        *("Counter", "deque", "count", "local", "WeakSet", "WeakValueDictionary"),
        *("WeakKeyDictionary", "Lock", "RLock", "Event", "Condition"),
        *MEMOS,
    }
)


def _called_name(node: ast.expr) -> str | None:
    """Return the name a call calls; ``lru_cache(maxsize=8)(f)`` calls lru_cache."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Call):
        return _called_name(func)
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _decorator_name(node: ast.expr) -> str | None:
    """Return ``lru_cache`` for @lru_cache, @functools.lru_cache(maxsize=8)..."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _memoised_functions(body: list[ast.stmt]) -> list[str]:
    """Return the memoised functions of a module or class body, nested classes too."""
    found = []
    for node in body:
        if isinstance(node, ast.ClassDef):
            found += _memoised_functions(node.body)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            _decorator_name(decorator) in MEMOS for decorator in node.decorator_list
        ):
            found.append(f"line {node.lineno}: a memo of {node.name}()")
    return found


def mutable_state(source: str) -> list[str]:
    """Return the module-level mutable assignments, memos and global statements."""
    tree = ast.parse(source)
    found = [
        f"line {node.lineno}: global {', '.join(node.names)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Global)
    ]
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if value is None or _is_constant_table(node, value):
            continue
        if isinstance(value, MUTABLE_DISPLAYS) or _called_name(value) in MUTABLE_CALLS:
            found.append(f"line {node.lineno}: {ast.unparse(node).splitlines()[0]}")
    return found + _memoised_functions(tree.body)


def _is_constant_table(node: ast.stmt, value: ast.expr) -> bool:
    """Tell whether ``node`` is ``__all__`` or a non-empty Final literal table."""
    if isinstance(node, ast.Assign):
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        return names == ["__all__"]
    if not isinstance(node, ast.AnnAssign) or "Final" not in ast.unparse(
        node.annotation
    ):
        return False
    if isinstance(value, ast.Dict):
        return bool(value.keys)
    if isinstance(value, ast.List | ast.Set):
        return bool(value.elts)
    return isinstance(value, ast.DictComp | ast.ListComp | ast.SetComp)


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize(
    "path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES]
)
def test_no_module_level_mutable_state(path: Path) -> None:
    assert mutable_state(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "_BACKGROUND: set[int] = set()",
        "_WAITING: Final = set()",
        "_SEEN: Final[dict[str, int]] = {}",
        "CACHE = {}",
        "SEEN = []",
        "counter = itertools.count()",
        "def f():\n    global X\n    X = 1",
        "parse: Final = SizedMemo(_parse, len, 1024)",
        "fits = functools.lru_cache(maxsize=64)(_fits)",
        "@functools.lru_cache(maxsize=64)\ndef f(x): return x",
        "@lru_cache\ndef f(x): return x",
        "@functools.cache\ndef f(x): return x",
        "class C:\n    @functools.lru_cache\n    def f(self, x): return x",
    ],
)
def test_the_check_finds_mutable_state(source: str) -> None:
    assert mutable_state(source) != []


def test_constants_are_not_state() -> None:
    source = 'NAMES = frozenset({"a"})\nPAIR = ("a", "b")\nLIMIT: Final = 10'
    assert mutable_state(source) == []


def test_a_memo_an_object_makes_is_not_module_state() -> None:
    source = (
        "class Memo:\n"
        "    def __init__(self):\n"
        "        self.fits = functools.lru_cache(maxsize=64)(_fits)\n"
        "        self.parse = SizedMemo(_parse, len, 1024)"
    )
    assert mutable_state(source) == []
