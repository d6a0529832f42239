from __future__ import annotations

from collections.abc import Callable
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
