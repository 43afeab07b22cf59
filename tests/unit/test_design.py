"""docs/design.md lists every module, and its order is the import order.

The design document says each module imports only modules above it in its
list of layers; this reads that list and the package's imports and checks
it, so that the document cannot drift from the code. The glue imports
neither the engine's coroutine machinery nor the DNS cache: they are the
check runner's (runner.py).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "milter" / "spf_milter"
DESIGN = ROOT / "docs" / "design.md"


def layers() -> list[str]:
    """Return the module names of the design's layer list, lowest first."""
    text = DESIGN.read_text(encoding="utf-8")
    block = text.split("## The layers", 1)[1].split("```", 2)[1]
    # An entry starts at the margin; indented lines continue its description.
    return [line.split()[0] for line in block.splitlines() if line[:1].strip()]


def layer_of(module: str) -> str:
    """Return the layer entry of ``spf_milter.x.y``: ``x/`` (a package) or ``x.py``."""
    first = module.split(".")[1]
    return f"{first}/" if (PACKAGE / first).is_dir() else f"{first}.py"


def units() -> dict[str, list[Path]]:
    """Return each layer entry with its files: a module, or a package's modules."""
    found: dict[str, list[Path]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        if not path.name.startswith("__"):
            found[path.name] = [path]
    for package in sorted(PACKAGE.glob("*/__init__.py")):
        found[f"{package.parent.name}/"] = sorted(package.parent.rglob("*.py"))
    return found


def our_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "spf_milter":
            found.update(f"spf_milter.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("spf_milter."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("spf_"))
    return found


def test_the_design_lists_every_module() -> None:
    assert set(layers()) == set(units())


def test_each_module_imports_only_modules_above_it() -> None:
    order = layers()
    wrong = []
    for unit, paths in units().items():
        position = order.index(unit)
        for path in paths:
            for module in our_imports(path):
                if module == "spf_milter.__version__":
                    continue
                target = layer_of(module)
                if target != unit and order.index(target) >= position:
                    wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert wrong == []


def test_the_glue_leaves_scheduling_to_the_runner() -> None:
    for name in ("callbacks.py", "flow.py"):
        imported = our_imports(PACKAGE / name)
        assert "spf_milter.spf.eager" not in imported, name
        assert "spf_milter.dnsclient.cache" not in imported, name


def test_the_layer_list_names_modules() -> None:
    assert all(re.fullmatch(r"[a-z_]+(\.py|/)", name) for name in layers())
