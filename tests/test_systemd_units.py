"""The shipped units verify, and the daemon's sandbox is "OK" or better (exposure <= 1.5)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = ("retentiond.service", "retentiond-apply.service", "retentiond-apply.timer")


@pytest.fixture
def units(tmp_path: Path) -> Path:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing; .ci/run installs the systemd package")
        pytest.skip("systemd-analyze is not installed")
    executable = Path(sys.executable).parent / "retentiond"
    for unit in UNITS:
        text = (REPO / "systemd" / unit).read_text().replace("/usr/local/bin/retentiond", str(executable))
        (tmp_path / unit).write_text(text)
    return tmp_path


def test_units_verify_without_errors(units: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", "--recursive-errors=yes", *(str(units / unit) for unit in UNITS)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("unit", ["retentiond.service", "retentiond-apply.service"])
def test_sandbox_exposure_is_at_most_1_5(units: Path, unit: str) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=15", str(units / unit)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert "Overall exposure level" in result.stdout


def test_daemon_unit_keeps_the_documented_contract() -> None:
    text = (REPO / "systemd" / "retentiond.service").read_text()
    for line in ("Type=notify", "RestartPreventExitStatus=78", "Restart=on-failure", "WatchdogSec=", "ExecReload="):
        assert line in text
    assert "Persistent=true" in (REPO / "systemd" / "retentiond-apply.timer").read_text()
