"""The dependency direction of STYLE.md §3.1, checked on the source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "milter" / "spf_milter"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_engine_imports_only_the_stdlib_and_itself() -> None:
    for path in sorted((PACKAGE / "spf").glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            allowed = top in sys.stdlib_module_names or top == "__future__"
            assert allowed or name.startswith("spf_milter.spf"), f"{path.name}: {name}"


def test_each_dependency_has_one_owner() -> None:
    owners = {
        "dns": {"resolver.py", "dnsquery.py"},
        "yaml": {"configyaml.py"},
        "Milter": {"callbacks.py"},
        "milter": {"callbacks.py"},  # pymilter's C extension
    }
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in owners:
                assert path.name in owners[top], f"{path}: {name}"


def test_source_root_is_not_a_package() -> None:
    # pymilter owns "import milter": our source root must never shadow it.
    assert not (PACKAGE.parent / "__init__.py").exists()
