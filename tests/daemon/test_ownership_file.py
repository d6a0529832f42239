"""A corrupt ``<state_dir>/ownership.json``: every command that needs the records exits 78 naming
the file, with one and the same message, and acts on nothing; ``status`` reports it and goes on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.errors import EXIT_CONFIG, EXIT_OK

REPO = Path(__file__).resolve().parents[2]
GOOD_RECORD = {"provider": "units", "name": "staging-a", "policy": "nights", "terminated_at": "2026-11-25T21:00:00+00:00",
               "window_ends_at": "2026-11-26T06:00:00+00:00", "identity": "", "manual": False}
CORRUPT: dict[str, bytes] = {
    "not-json": b"{not json",
    "empty": b"",
    "not-utf-8": b"\x80\x81{}",
    "a-list": b"[]",
    "records-not-a-list": json.dumps({"records": "staging-a"}).encode(),
    "record-without-provider": json.dumps({"records": [{k: v for k, v in GOOD_RECORD.items() if k != "provider"}]}).encode(),
    "provider-not-a-string": json.dumps({"records": [{**GOOD_RECORD, "provider": 7}]}).encode(),
    "instant-without-timezone": json.dumps({"records": [{**GOOD_RECORD, "terminated_at": "2026-11-25T21:00:00"}]}).encode(),
    "instant-not-iso": json.dumps({"records": [{**GOOD_RECORD, "window_ends_at": "tomorrow"}]}).encode(),
    "manual-not-a-bool": json.dumps({"records": [{**GOOD_RECORD, "manual": "false"}]}).encode(),
    "hand-start-instant-a-number": json.dumps(
        {"started_by_hand": [{"provider": "units", "name": "staging-a", "started_at": 5}]}
    ).encode(),
    "inactive-since-key-without-provider": json.dumps({"inactive_since": {"staging-a": "2026-11-25T21:00:00+00:00"}}).encode(),
}
COMMANDS = [
    ("deployments", "list"),
    ("deployments", "terminate", "staging-a"),
    ("deployments", "restart", "staging-a"),
    ("plan",),
    ("apply",),
]


@pytest.fixture
def config(write_config: Callable[..., Path], five_versions: list[str], tmp_path: Path) -> Path:
    listing = tmp_path / "deployments.json"
    listing.write_text(json.dumps([{"name": "staging-a", "status": "running"}]))
    acted = tmp_path / "acted"
    return write_config(
        '[[retention]]\nname = "ci"\nkeep_last = 2\n'
        f'[providers.units]\ntype = "command"\nlist = "cat {listing}"\n'
        f'terminate = "touch {acted}-terminate-{{name}}"\nrestart = "touch {acted}-restart-{{name}}"\n'
        '[[offhours]]\nname = "nights"\nprovider = "units"\ndowntime = "always"\ngrace_period = "0s"\n'
    )


def ownership_path(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "ownership.json"
    path.parent.mkdir(exist_ok=True)
    return path


def assert_nothing_acted(tmp_path: Path, home: Path) -> None:
    assert not list(tmp_path.glob("acted-*"))
    assert {entry.name for entry in (home / "models" / "iris").iterdir() if entry.is_dir()} == {"v0", "v1", "v2", "v3", "v4"}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_every_command_that_needs_the_records_exits_78_naming_the_file_with_one_message(
    content: bytes, config: Path, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ownership_path(tmp_path)
    path.write_bytes(content)
    messages = set()
    for command in COMMANDS:
        assert main([*command, "--config", str(config)]) == EXIT_CONFIG, command
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith(f"retentiond: ownership records {path} are unreadable: "), (command, error)
        messages.add(error)
    assert len(messages) == 1, messages
    assert_nothing_acted(tmp_path, home)
    assert path.read_bytes() == content  # kept for a person to look at, never overwritten


def test_an_ownership_path_that_is_a_directory_exits_78_naming_it(
    config: Path, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ownership_path(tmp_path)
    path.mkdir()
    for command in COMMANDS:
        assert main([*command, "--config", str(config)]) == EXIT_CONFIG, command
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"retentiond: ownership records {path} are unreadable: Is a directory"
        )
    assert_nothing_acted(tmp_path, home)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_corrupt_ownership_file_is_never_a_traceback_of_the_installed_command(
    command: tuple[str, ...], config: Path, tmp_path: Path
) -> None:
    path = ownership_path(tmp_path)
    path.write_bytes(CORRUPT["record-without-provider"])
    result = subprocess.run([sys.executable, "-m", "daemon", *command, "--config", str(config)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == EXIT_CONFIG
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"retentiond: ownership records {path} are unreadable: an entry has no 'provider'"
    )


def test_status_reports_a_corrupt_ownership_file_and_shows_the_rest(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ownership_path(tmp_path)
    path.write_bytes(CORRUPT["not-json"])
    assert main(["status", "--config", str(config), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["store"]["versions"] == 5
    (row,) = report["deployments"]
    assert row["status"] == "error" and row["reasons"][0].startswith(f"ownership records {path} are unreadable: ")
