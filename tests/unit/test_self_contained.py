"""A clone of the repository is the whole project: nothing reads outside it.

A user's clone has nothing beside it, so a path that climbs out of the
checkout (a sibling folder, a developer's home) works on one machine only.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
# A path out of the checkout: "../name" where the climb leaves the repository,
# or ".parents[N]" in a test beyond the repository's root.
OUTSIDE = re.compile(r"\.\./shared|parents\[(\d+)\]")


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "-C", str(TOP), "ls-files", "-z"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [TOP / name for name in listed.split("\0") if name]


def climbs_out(path: Path, match: re.Match[str]) -> bool:
    if match.group(1) is None:
        return True
    # parents[k] of tests/unit/x.py is inside for k < 3 (tests/unit, tests, TOP)
    return int(match.group(1)) >= len(path.relative_to(TOP).parents)


def test_no_tracked_file_refers_outside_the_repository() -> None:
    offenders = []
    for path in tracked_files():
        if path.suffix == ".yml" or not path.is_file():
            continue  # the openspf data
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for match in OUTSIDE.finditer(line):
                if climbs_out(path, match):
                    where = f"{path.relative_to(TOP)}:{number}"
                    offenders.append(f"{where}: {line.strip()}")
    assert offenders == []


def test_the_openspf_suites_ship_with_their_licence() -> None:
    suites = TOP / "tests" / "openspf"
    assert {p.name for p in suites.glob("*.yml")} == {
        "rfc7208-tests.yml",
        "rfc4408-tests.yml",
    }
    readme = (suites / "README.md").read_text()
    assert "Redistribution and use in source and binary forms" in readme
    assert "sdgathman/pyspf" in readme
