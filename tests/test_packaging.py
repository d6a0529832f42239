"""The wheel holds every package and module of the source tree (a hand list once dropped daemon/providers/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = ("daemon", "policies")


def build_wheel(tmp_path: Path) -> zipfile.ZipFile:
    """Build the wheel of a copy of the checkout (a stale build/ would ship modules that no longer exist)."""
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("retentiond-*.whl")
    return zipfile.ZipFile(wheel)


def source_files(pattern: str) -> set[str]:
    """Return the paths (relative to the checkout) of the files matching ``pattern`` under the package roots."""
    return {
        path.relative_to(REPO).as_posix()
        for root in PACKAGE_ROOTS
        for path in (REPO / root).rglob(pattern)
        if "__pycache__" not in path.parts
    }


def test_wheel_holds_every_package_and_module_of_the_source_tree(tmp_path: Path) -> None:
    with build_wheel(tmp_path) as wheel:
        names = set(wheel.namelist())
        entry_points = next(wheel.read(name).decode() for name in names if name.endswith(".dist-info/entry_points.txt"))
    packages = source_files("__init__.py")
    assert {"daemon/__init__.py", "daemon/providers/__init__.py", "policies/__init__.py"} <= packages
    assert sorted(packages - names) == []
    # A directory without __init__.py is not found by discovery: its modules would be missing too.
    assert sorted(source_files("*.py") - names) == []
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    assert "retentiond = daemon.cli:main" in entry_points
