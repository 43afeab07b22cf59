"""The shipped systemd unit: valid, and as locked down as the daemon allows."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "init" / "spf-milter.service"
MAX_EXPOSURE = 2.0  # systemd-analyze security: 0 (best) .. 10; "OK" is below 3.5

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _unit_with_true(tmp_path: Path) -> Path:
    # The unit runs /opt/spf-milter/bin/spf-milter, not installed here.
    unit = tmp_path / "spf-milter.service"
    unit.write_text(
        UNIT.read_text().replace("/opt/spf-milter/bin/spf-milter", "/bin/true")
    )
    return unit


def test_unit_verifies(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_with_true(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line for line in done.stderr.splitlines() if "spf-milter.service" in line
    ]
    assert problems == [], done.stderr


def test_unit_exposure_is_low(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            str(_unit_with_true(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE
    for required in ("NoNewPrivileges", "ProtectSystem", "CapabilityBoundingSet"):
        assert f"✗ {required}" not in done.stdout
