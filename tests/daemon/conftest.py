from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.fakestore import add_model, make_home

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


@pytest.fixture
def write_config(tmp_path: Path, home: Path) -> Callable[..., Path]:
    """Write a config for the test store; extra TOML is appended."""

    def write(policies: str = "[[retention]]\nname = \"ci\"\nkeep_last = 2\n", timezone_name: str = "UTC") -> Path:
        path = tmp_path / "config.toml"
        path.write_text(
            f'[store]\nhome = "{home}"\n'
            f'[daemon]\ntimezone = "{timezone_name}"\nstate_dir = "{tmp_path / "state"}"\n'
            f'audit_log = "{tmp_path / "log" / "audit.jsonl"}"\n' + policies
        )
        return path

    return write


@pytest.fixture
def five_versions(home: Path) -> list[str]:
    """iris with five daily versions, newest first; latest names the newest."""
    versions = []
    for day in range(5):
        version = f"v{day}"
        add_model(home, "iris", version, NOW - timedelta(days=day + 1))
        versions.append(version)
    return versions


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Make a file or directory immutable with ``chattr +i`` (skip where the filesystem or the user cannot);
    undone at the end."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("chattr +i needs root and e2fsprogs")

    def make(path: Path) -> None:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {done.stderr.strip()}")

    yield make
    subprocess.run(["chattr", "-R", "-i", str(tmp_path)], capture_output=True)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """Create files with exactly the modes the code asks for."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)
