"""The benchmark runs end to end on tiny stores and prints its table (its figures are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.bentoml
def test_quick_benchmark_prints_one_table_with_every_row(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    table = [line for line in finished.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| what | baseline | versions | retentiond |")
    rows = "\n".join(table[2:])
    for expected in (
        "first `plan`, no cache", "next `plan`, unchanged store", "scan alone, cached", "20 files/version",
        "evaluate only", "`apply` deleting half", "BentoML's loop", "empty store", "daemon idle", "over budget",
    ):
        assert expected in rows, f"missing row {expected!r}:\n{finished.stdout}"
    assert "machine:" in finished.stdout and "python -m bench.run --quick" in finished.stdout
    assert list((tmp_path / "work").iterdir()) == [], "the stores are removed afterwards"


def test_quick_in_use_benchmark_prints_its_table(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.inuse", "--quick", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = [line for line in finished.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| what | with the check | baseline |")
    for expected in ("/proc scan: fd, maps and cwd", "psutil", "working directories only", "lease probe", "`plan`",
                     "keep_used_within", "`apply` of 10 deletions"):
        assert any(expected in row for row in rows[1:]), f"missing {expected!r}:\n{finished.stdout}"
    assert list(tmp_path.iterdir()) == [], "the stores are removed afterwards"
