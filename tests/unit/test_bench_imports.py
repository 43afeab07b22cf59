"""The benchmark modules import each other without a cycle.

A cycle among bench/ modules (the load matrix importing its parts, the
parts importing the matrix back for a type) makes every module of the
loop depend on all the others: none can be read, run or moved alone.
Every import counts here, also one inside a function or under
``TYPE_CHECKING``, since each is a dependency a reader must follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Set
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _imported_names(tree: ast.AST) -> Iterator[str]:
    """Yield every dotted module name an import statement of ``tree`` names."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _bench_module(name: str, modules: Set[str]) -> str | None:
    """Return the bench/ module that ``name`` refers to, if any."""
    parts = name.split(".")
    if parts[0] == "bench" and len(parts) > 1 and parts[1] in modules:
        return parts[1]
    if len(parts) == 1 and parts[0] in modules:
        return parts[0]  # a bench module imported by its bare name
    return None


def bench_graph(directory: Path) -> dict[str, set[str]]:
    """Return, for each module of ``directory``, the bench modules it imports."""
    sources = {path.stem: path for path in directory.glob("*.py")}
    modules = set(sources) - {"__init__"}
    graph: dict[str, set[str]] = {}
    for module in sorted(modules):
        tree = ast.parse(sources[module].read_text(encoding="utf-8"))
        found = (_bench_module(name, modules) for name in _imported_names(tree))
        graph[module] = {target for target in found if target and target != module}
    return graph


def find_cycle(graph: Mapping[str, Set[str]]) -> list[str]:
    """Return one import cycle of ``graph`` as a path of modules, or []."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str]:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return []
        for target in sorted(graph.get(module, ())):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return []

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return []


def test_bench_modules_import_each_other_without_a_cycle() -> None:
    graph = bench_graph(BENCH)
    assert "loadmatrix" in graph, "bench/ modules not found"
    assert find_cycle(graph) == []


def test_the_graph_sees_lazy_and_type_only_imports(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from bench.b import x\n")
    type_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
    (tmp_path / "b.py").write_text(type_only + "    from bench import c\n")
    (tmp_path / "c.py").write_text("def f():\n    import a\n")
    graph = bench_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_no_cycle_in_a_graph_that_shares_a_module() -> None:
    graph = {"top": {"left", "right"}, "left": {"base"}, "right": {"base"}}
    assert find_cycle(graph) == []


def test_only_one_bench_module_sets_the_import_path() -> None:
    """Test helpers come through bench/testhelpers.py; no other module
    edits sys.path, so that moving tests/ helpers changes one file."""
    editing = sorted(
        path.name
        for path in BENCH.glob("*.py")
        if "sys.path" in path.read_text(encoding="utf-8")
    )
    assert editing == ["testhelpers.py"]
