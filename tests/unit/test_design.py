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
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def layer_of(module: str) -> str:
    """Return the layer entry of ``spf_milter.x.y``: ``spf/`` or ``x.py``."""
    parts = module.split(".")[1:]
    return "spf/" if parts[0] == "spf" else f"{parts[0]}.py"


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
    modules = {
        path.name for path in PACKAGE.glob("*.py") if not path.name.startswith("__")
    }
    assert set(layers()) == modules | {"spf/"}


def test_each_module_imports_only_modules_above_it() -> None:
    order = layers()
    wrong = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name.startswith("__"):
            continue
        position = order.index(path.name)
        for module in our_imports(path):
            if module == "spf_milter.__version__":
                continue
            target = layer_of(module)
            if order.index(target) >= position:
                wrong.append(f"{path.name} imports {module}")
    assert wrong == []


def test_the_glue_leaves_scheduling_to_the_runner() -> None:
    for name in ("callbacks.py", "flow.py"):
        imported = our_imports(PACKAGE / name)
        assert "spf_milter.spf.eager" not in imported, name
        assert "spf_milter.dnscache" not in imported, name


def test_the_layer_list_names_modules() -> None:
    assert all(re.fullmatch(r"[a-z_]+\.py|spf/", name) for name in layers())
