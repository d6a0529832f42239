"""``retentiond status``: per name, ``oldest`` and ``newest`` are the oldest and newest creation times,
in JSON and in the columns of the human table (the CLI in a subprocess, on a store of known times)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.fakestore import add_bento, add_model

REPO = Path(__file__).resolve().parents[2]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def add_model_written_with_offset(home: Path, version: str, creation_time: str) -> None:
    """Add an iris version whose model.yaml states its creation_time with a UTC offset other than +00:00."""
    version_dir = add_model(home, "iris", version, at(creation_time), set_latest=False)
    metadata = version_dir / "model.yaml"
    lines = [f"creation_time: '{creation_time}'" if line.startswith("creation_time:") else line
             for line in metadata.read_text().splitlines()]
    metadata.write_text("\n".join(lines) + "\n")


@pytest.fixture
def store_of_known_times(home: Path) -> Path:
    # Versions named, made on disk and listed in an order unrelated to their creation times.
    add_model(home, "iris", "a", at("2026-03-01T08:00:00+00:00"))
    add_model(home, "iris", "b", at("2025-12-31T23:59:59+00:00"))  # the oldest
    add_model(home, "iris", "z", at("2026-01-15T12:00:00+00:00"))
    add_model(home, "iris", "c", at("2026-03-02T21:00:00+00:00"))  # the newest
    # Later than the newest by its own wall clock, earlier in UTC (20:00Z): instants count, not text.
    add_model_written_with_offset(home, "d", "2026-03-03T01:00:00+05:00")
    broken = home / "models" / "iris" / "e"
    broken.mkdir()
    (broken / "model.yaml").write_text("")  # no creation time: counted, but neither oldest nor newest
    add_model(home, "mnist", "only", at("2026-02-02T02:02:02+00:00"))
    add_bento(home, "svc", "y", at("2026-02-10T10:00:00+00:00"), ["iris:a"])
    add_bento(home, "svc", "x", at("2026-02-20T10:00:00+00:00"), ["iris:c"])
    return home


def status(config: Path, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--config", str(config), *extra],
        capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def cells(line: str) -> list[str]:
    """Split a line of a status table (columns two or more spaces apart, one row per line off a terminal)."""
    return re.split(r"\s{2,}", line.strip())


EXPECTED = {
    ("model", "iris"): (6, "2025-12-31T23:59:59Z", "2026-03-02T21:00:00Z"),
    ("model", "mnist"): (1, "2026-02-02T02:02:02Z", "2026-02-02T02:02:02Z"),
    ("bento", "svc"): (2, "2026-02-10T10:00:00Z", "2026-02-20T10:00:00Z"),
}


def test_status_json_gives_each_name_its_oldest_and_newest_creation_time(
    store_of_known_times: Path, write_config: Callable[..., Path]
) -> None:
    report = json.loads(status(write_config(""), "--json"))
    names = {(entry["kind"], entry["name"]): (entry["versions"], entry["oldest"], entry["newest"])
             for entry in report["store"]["names"]}
    assert names == EXPECTED


def test_status_table_shows_oldest_and_newest_under_their_own_headings(
    store_of_known_times: Path, write_config: Callable[..., Path]
) -> None:
    lines = status(write_config("")).splitlines()
    rows = {}
    for index, line in enumerate(lines):
        if cells(line) != ["NAME", "VERSIONS", "ON DISK", "OLDEST", "NEWEST"]:
            continue
        kind = lines[index - 1].removesuffix("s")  # the table of each kind follows a line "models" or "bentos"
        for row in lines[index + 1:]:
            if not row or row.startswith(("models", "bentos", "in use", "warning")):
                break
            by_heading = dict(zip(cells(line), cells(row), strict=True))
            rows[(kind, by_heading["NAME"])] = (int(by_heading["VERSIONS"]), by_heading["OLDEST"], by_heading["NEWEST"])
    assert rows == EXPECTED
