"""A version a running process holds is never deleted: open, memory-mapped (descriptor closed), or its
working directory; released when the process exits; caught again under the lock right before deletion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from daemon.audit import read_records
from daemon.cli import main
from daemon.errors import EXIT_OK
from tests.fakestore import add_model
from tests.holders import holding, release, start_holder

HELD = "v3"  # keep_last = 2 over v0..v4 deletes v2, v3 and v4


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *arguments], capture_output=True, text=True, timeout=120)


def plan(config: Path) -> dict:
    finished = cli("plan", "--config", str(config), "--json")
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout)


def deleted(report: dict) -> set[str]:
    return {action["version"] for action in report["actions"] if action["action"] == "delete"}


def kept_reasons(report: dict, version: str) -> list[str]:
    return [reason for kept in report["kept"] if kept["version"] == version for reason in kept["reasons"]]


@pytest.fixture
def held_dir(home: Path, five_versions: list[str]) -> Path:
    """The version the tests hold, with a sub-directory holding a file (times as old as the version)."""
    version_dir = home / "models" / "iris" / HELD
    old = os.stat(version_dir).st_mtime_ns
    (version_dir / "sub").mkdir()
    (version_dir / "sub" / "tokenizer.json").write_bytes(b"{}" * 50)
    for path in (version_dir / "sub" / "tokenizer.json", version_dir / "sub", version_dir):
        os.utime(path, ns=(old, old))
    return version_dir


WAYS = {
    "open file": ("open", "weights-0.bin"),
    "memory map, descriptor closed": ("mmap", "weights-0.bin"),
    "working directory": ("cwd", "."),
    "open file in a sub-directory": ("open", "sub/tokenizer.json"),
    "working directory in a sub-directory": ("cwd", "sub"),
}


@pytest.mark.parametrize("way", WAYS)
def test_plan_keeps_a_held_version_naming_the_process_and_releases_it_after_exit(
    way: str, held_dir: Path, write_config: Callable[..., Path]
) -> None:
    config = write_config()
    mode, relative = WAYS[way]
    child = start_holder(mode, held_dir / relative)
    try:
        report = plan(config)
        assert deleted(report) == {"v2", "v4"}
        assert any(reason.startswith(f"in use by pid {child.pid} (") for reason in kept_reasons(report, HELD)), report["kept"]
    finally:
        release(child)
    after = plan(config)
    assert deleted(after) == {"v2", "v3", "v4"}, kept_reasons(after, HELD)


def test_status_counts_the_versions_in_use(held_dir: Path, write_config: Callable[..., Path]) -> None:
    with holding("mmap", held_dir / "weights-1.bin"):
        finished = cli("status", "--config", str(write_config()), "--json")
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["store"]["in_use"] == 1


def race_after_plan(monkeypatch: pytest.MonkeyPatch, interfere: Callable[[], None]) -> None:
    """Make ``interfere()`` run after apply has decided and before it acts (between the in-use scan and the deletions)."""
    from daemon import guards

    real_evaluate = guards.evaluate  # the run decides through daemon.guards (require_pushed may ask in rounds)

    def evaluate_then_race(*arguments, **keywords):  # type: ignore[no-untyped-def]
        decided = real_evaluate(*arguments, **keywords)
        interfere()
        return decided

    monkeypatch.setattr(guards, "evaluate", evaluate_then_race)


@pytest.fixture
def late_holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        release(child)


@pytest.mark.parametrize("way", ["open file", "memory map, descriptor closed", "working directory", "open file in a sub-directory"])
def test_a_process_that_starts_using_a_version_after_the_plan_is_caught_under_the_lock(
    way: str, held_dir: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], tmp_path: Path, late_holders: list[subprocess.Popen[str]],
) -> None:
    mode, relative = WAYS[way]
    race_after_plan(monkeypatch, lambda: late_holders.append(start_holder(mode, held_dir / relative)))
    code = main(["apply", "--config", str(write_config()), "--json"])
    outcomes = {action["version"]: (action["outcome"], action["error"]) for action in json.loads(capsys.readouterr().out)["actions"]}
    assert code == EXIT_OK
    assert outcomes["v2"] == ("ok", None) and outcomes["v4"] == ("ok", None)
    outcome, error = outcomes[HELD]
    assert outcome == "skipped" and error.startswith(f"in use by pid {late_holders[0].pid} ("), error
    assert held_dir.is_dir()
    skipped = [r for r in read_records(tmp_path / "log" / "audit.jsonl") if r["event"] == "artifact.delete_skipped"]
    assert [(record["version"], record["error"]) for record in skipped] == [(HELD, error)]


def test_a_holder_that_exits_between_the_plan_and_the_deletion_does_not_matter(
    held_dir: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    child = start_holder("mmap", held_dir / "weights-0.bin")
    race_after_plan(monkeypatch, lambda: release(child))
    config = write_config()
    assert main(["apply", "--config", str(config), "--json"]) == EXIT_OK
    first = json.loads(capsys.readouterr().out)
    assert deleted(first) == {"v2", "v4"} and all(action["outcome"] == "ok" for action in first["actions"])
    assert held_dir.is_dir(), "kept this run: it was in use when the run decided"
    monkeypatch.undo()
    assert main(["apply", "--config", str(config), "--json"]) == EXIT_OK
    second = json.loads(capsys.readouterr().out)
    assert [(action["version"], action["outcome"]) for action in second["actions"]] == [(HELD, "ok")]


def test_a_store_seen_through_a_bind_mount_is_matched_by_inode(
    held_dir: Path, home: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "bind"
    elsewhere.mkdir()
    if subprocess.run(["mount", "--bind", str(home), str(elsewhere)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        with holding("mmap", elsewhere / "models" / "iris" / HELD / "weights-0.bin") as child:
            report = plan(write_config())
        assert any(reason.startswith(f"in use by pid {child.pid} (") for reason in kept_reasons(report, HELD))
    finally:
        subprocess.run(["umount", str(elsewhere)], check=True)


def test_a_process_in_another_version_of_the_same_name_holds_only_that_one(
    home: Path, five_versions: list[str], write_config: Callable[..., Path]
) -> None:
    # v3 and v33: a path prefix match would take v33's holder for v3's.
    add_model(home, "iris", "v33", datetime(2020, 1, 1, tzinfo=timezone.utc), set_latest=False)
    with holding("open", home / "models" / "iris" / "v33" / "weights-0.bin") as child:
        report = plan(write_config())
    assert "v3" in deleted(report)
    assert any(reason.startswith(f"in use by pid {child.pid} (") for reason in kept_reasons(report, "v33"))


@pytest.mark.parametrize(("euid", "remedy"), [
    (0, "; even root cannot read them here (a container without CAP_SYS_PTRACE, or a hardened /proc)"),
    (65534, "; run retentiond as root to read every process"),
])
def test_the_unreadable_warning_advises_root_only_to_a_user_who_is_not_root(
    monkeypatch: pytest.MonkeyPatch, euid: int, remedy: str
) -> None:
    from daemon import inuse
    from daemon.procscan import ProcessScan, Unreadable

    monkeypatch.setattr(inuse.os, "geteuid", lambda: euid)
    monkeypatch.setattr(inuse, "hidden_processes", lambda mounts: None)
    one = ProcessScan(unreadable=[Unreadable(1, frozenset({0}), "init")])
    two = ProcessScan(unreadable=[Unreadable(1, frozenset({0}), "init"), Unreadable(7, frozenset({0}), "kthread")])
    [warning] = inuse.unreadable_warnings(one)
    assert warning.startswith("in-use check: 1 running process cannot be read (1 of root); ") and warning.endswith(remedy)
    [warning] = inuse.unreadable_warnings(two)
    assert warning.startswith("in-use check: 2 running processes cannot be read (2 of root); ")
