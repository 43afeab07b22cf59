"""The README's claims that can drift from the code, checked against it."""

from __future__ import annotations

import re
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
README = (TOP / "README.md").read_text()
PACKAGE = TOP / "milter" / "spf_milter"


def layout_section() -> str:
    return README.split("## Layout", 1)[1]


def test_the_layout_names_every_module() -> None:
    layout = layout_section()
    modules = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
    )
    named = set(re.findall(r"[a-z_]+\.py", layout))
    missing = [m for m in modules if Path(m).name not in named]
    assert missing == []


def test_every_script_the_readme_names_exists() -> None:
    named = set(re.findall(r"scripts/[a-z-]+", README))
    assert named
    assert sorted(n for n in named if not (TOP / n).is_file()) == []


def test_the_sample_policy_files_are_all_described() -> None:
    samples = [p.relative_to(TOP).as_posix() for p in (TOP / "etc").rglob("*.yaml")]
    section = README.split("## Two commands", 1)[1].split("## Wiring", 1)[0]
    undescribed = [
        s for s in samples if s != "etc/spf-milter.yaml" and s not in section
    ]
    assert undescribed == []
