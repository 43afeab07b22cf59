"""The dependency direction of STYLE.md §3.1, checked on the source."""

from __future__ import annotations

import ast
import subprocess
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
        "dns": {"dnsclient/resolver.py", "dnsclient/query.py"},
        "yaml": {"config/yamlnodes.py"},
        "Milter": {"callbacks.py"},
        "milter": {"callbacks.py"},  # pymilter's C extension
    }
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for name in _imports(path):
            top = name.split(".")[0]
            if top in owners:
                assert module in owners[top], f"{module}: {name}"


def _loaded_by(module: str) -> set[str]:
    """Return the modules a fresh interpreter holds after importing ``module``."""
    code = f"import sys, {module}; print(*sorted(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def _runtime(names: set[str]) -> set[str]:
    """Keep dnspython, prometheus_client and our DNS, loop and metrics modules."""
    heavy = ("dns", "prometheus_client", "Milter", "milter")
    ours = ("dnsclient", "eventloop", "metrics", "service")
    return {
        name
        for name in names
        if name.split(".")[0] in heavy
        or (
            name.removeprefix("spf_milter.").split(".")[0] in ours
            and name.startswith("spf_milter.")
        )
    }


def test_configuration_loads_no_dns_loop_or_metrics_code() -> None:
    # Reading and checking the files must not need the runtime: the
    # engine's asyncio import is the stdlib's, no event loop is made.
    assert _runtime(_loaded_by("spf_milter.config")) == set()


def test_what_a_transaction_decides_needs_no_runtime() -> None:
    # The decision, the header fields and the session take values only.
    for module in ("spf_milter.outcome", "spf_milter.session", "spf_milter.settings"):
        assert _runtime(_loaded_by(module)) == set(), module


def test_source_root_is_not_a_package() -> None:
    # pymilter owns "import milter": our source root must never shadow it.
    assert not (PACKAGE.parent / "__init__.py").exists()
