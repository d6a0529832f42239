"""Concurrency: the daemon and `apply` runs share one store lock; a real BentoML save races `apply`.

Every run here is a real `retentiond` process. The audit log is the witness: a run writes
it only while holding the store lock, so records of two runs must never interleave, and a
version must never be deleted twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from daemon.audit import read_records
from daemon.inventory import scan_store
from daemon.store import Store
from tests.crash.injector import child_environment, start_injected
from tests.fakestore import add_model, make_home, populate

REPO = Path(__file__).resolve().parents[1]
RETENTIOND = str(Path(sys.executable).parent / "retentiond")
NOW = datetime.now(timezone.utc).replace(microsecond=0)
EXIT_BUSY = 75


def write_config(root: Path, home: Path, policies: str) -> Path:
    config = root / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n[daemon]\nstate_dir = "{root / "state"}"\naudit_log = "{root / "audit.jsonl"}"\n'
        + policies
    )
    return config


def start(home: Path, *arguments: str, log: Path | None = None) -> subprocess.Popen[str]:
    """Start ``retentiond ARGUMENTS``; its stderr goes to ``log`` if given (to watch it while it runs)."""
    stderr = log.open("w") if log is not None else subprocess.PIPE
    try:
        return subprocess.Popen(
            [RETENTIOND, *arguments], stdout=subprocess.PIPE, stderr=stderr, text=True,
            env=child_environment(home), cwd=REPO,
        )
    finally:
        if log is not None:
            stderr.close()


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def version_dirs(home: Path) -> set[tuple[str, str]]:
    return {(path.parent.name, path.name) for path in (home / "models").glob("*/*") if path.is_dir()}


def audit(root: Path) -> list[dict[str, Any]]:
    path = root / "audit.jsonl"
    return list(read_records(path)) if path.exists() else []


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    """Children the test starts; any still running at the end are killed."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def assert_runs_never_interleave(records: list[dict[str, Any]]) -> None:
    finished: set[str] = set()
    current = None
    for record in records:
        run_id = record.get("run_id")
        if run_id != current:
            assert run_id not in finished, f"run {run_id} wrote again after another run started: runs interleaved"
            if current is not None:
                finished.add(current)
            current = run_id


def test_daemon_and_two_applies_at_once_never_act_twice_on_a_version(
    tmp_path: Path, processes: list[subprocess.Popen[Any]]
) -> None:
    home = make_home(tmp_path)
    populate(home, names=4, versions_per_name=25, now=NOW, spacing=timedelta(hours=5))
    artifacts = sorted(scan_store(home).artifacts, key=lambda artifact: artifact.created_at or NOW, reverse=True)
    kept_by_retention = sum(a.size_bytes for name in {a.name for a in artifacts} for a in [x for x in artifacts if x.name == name][:10])
    budget = kept_by_retention * 6 // 10  # the disk policy has to evict beyond what retention deletes
    config = write_config(tmp_path, home, (
        '[[retention]]\nname = "ci"\nkeep_last = 10\n'
        f'[[disk]]\nname = "budget"\nmax_store_size = "{budget}B"\ncheck_interval = "1s"\n'
    ))
    daemon_log = tmp_path / "daemon.log"
    with Store(home).locked():
        # All three start while the lock is taken, so they contend for it the moment it is free.
        daemon = start(home, "run", "--config", str(config), log=daemon_log)
        applies = [start(home, "apply", "--config", str(config), "--json", "--wait", "60") for _ in range(2)]
        processes.extend([daemon, *applies])
        # On a loaded machine the daemon can take seconds to start; once the applies had the store under
        # budget it would never run. Hold the lock until it has found the store over budget.
        wait_until(lambda: "disk.triggered" in daemon_log.read_text(), 30, "the daemon to find the store over budget")
        time.sleep(1.0)
        assert all(process.poll() is None for process in processes), "a run did not wait for the lock"
        assert len(version_dirs(home)) == 100
    for process in applies:
        code, _, stderr = finish(process)
        assert code == 0, stderr
    wait_until(lambda: sum(r["event"] == "run.finished" for r in audit(tmp_path)) >= 3, 30, "the daemon's disk run")
    daemon.send_signal(signal.SIGTERM)
    assert finish(daemon)[0] == 0

    records = audit(tmp_path)
    assert len({r["pid"] for r in records if r["event"] == "run.started"}) == 3
    assert_runs_never_interleave(records)
    deleted = Counter((r["name"], r["version"]) for r in records if r["event"] == "artifact.deleted")
    assert deleted and max(deleted.values()) == 1
    assert not [r for r in records if r["event"] in ("artifact.delete_failed", "artifact.delete_skipped")]
    assert version_dirs(home) == {(a.name, a.version) for a in scan_store(home).artifacts}
    assert len(version_dirs(home)) + len(deleted) == 100
    assert {name for name, _ in version_dirs(home)} == {f"model-{index:04d}" for index in range(4)}
    assert sum(a.size_bytes for a in scan_store(home).artifacts) <= budget


def test_apply_wait_waits_for_the_lock_and_then_runs(tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    home = make_home(tmp_path)
    for day in range(5):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1))
    config = write_config(tmp_path, home, '[[retention]]\nname = "ci"\nkeep_last = 2\n')
    with Store(home).locked():
        waiting = start(home, "apply", "--config", str(config), "--json", "--wait", "30")
        processes.append(waiting)
        time.sleep(2.0)
        assert waiting.poll() is None, "apply --wait gave up while the lock was held"
        assert version_dirs(home) == {("iris", f"v{day}") for day in range(5)}
        released_at = time.monotonic()
    code, stdout, stderr = finish(waiting)
    assert code == 0, stderr
    assert time.monotonic() - released_at < 15
    assert {(a["version"], a["outcome"]) for a in json.loads(stdout)["actions"]} == {("v2", "ok"), ("v3", "ok"), ("v4", "ok")}
    assert version_dirs(home) == {("iris", "v0"), ("iris", "v1")}


def test_apply_wait_exits_75_when_the_wait_runs_out(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    for day in range(5):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1))
    config = write_config(tmp_path, home, '[[retention]]\nname = "ci"\nkeep_last = 2\n')
    with Store(home).locked():
        started = time.monotonic()
        code, _, stderr = finish(start(home, "apply", "--config", str(config), "--wait", "1.5"))
        waited = time.monotonic() - started
    assert code == EXIT_BUSY
    assert waited >= 1.5
    assert "is busy" in stderr and f"pid {os.getpid()}" in stderr
    assert len(version_dirs(home)) == 5
    assert not [r for r in audit(tmp_path) if r["event"].startswith("artifact.")]


def test_lock_holder_killed_with_sigkill_does_not_leave_the_store_locked(
    tmp_path: Path, processes: list[subprocess.Popen[Any]]
) -> None:
    home = make_home(tmp_path)
    for day in range(6):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1))
    config = write_config(tmp_path, home, '[[retention]]\nname = "ci"\nkeep_last = 2\n')
    apply = ["apply", "--config", str(config), "--json"]
    # A real apply freezes itself just before its second move into the trash: lock held, one version in the trash.
    holder = start_injected(
        apply, home, tmp_path, 2, CRASH_SIGNAL="STOP", CRASH_AT_EVENT="os.rename", CRASH_MATCH=str(home / "models" / "iris"),
    )
    processes.append(holder)
    wait_until(lambda: len(version_dirs(home)) == 5, 30, "the first version to move into the trash")
    time.sleep(0.2)
    code, _, stderr = finish(start(home, *apply))
    assert code == EXIT_BUSY and f"pid {holder.pid}" in stderr

    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=10) == -signal.SIGKILL
    code, stdout, stderr = finish(start(home, *apply))
    assert code == 0, stderr
    assert version_dirs(home) == {("iris", "v0"), ("iris", "v1")}
    assert not any((home / ".retentiond" / "trash").iterdir())
    assert (home / "models" / "iris" / "latest").read_text() == "v0"
    records = audit(tmp_path)
    intended = {r["version"] for r in records if r["event"] == "artifact.delete_intended"}
    assert intended == {"v2", "v3", "v4", "v5"}
    assert not [r for r in records if r["event"] == "artifact.delete_failed"]


# A real `bentoml.models.create` whose creation_time and weight files are three days old (a long
# training run) and whose copy into the store is slow: model.yaml lands first, then one shard every
# DELAY seconds, and `latest` only at the end -- the window REFERENCE.md §1 warns about.
SLOW_SAVE = r"""
import os, shutil, sys, time
from datetime import datetime, timedelta, timezone
from pathlib import Path
import bentoml
from freezegun import freeze_time

shards, delay = int(sys.argv[1]), float(sys.argv[2])
real_copytree = shutil.copytree

def slow_copy(source, destination, *, follow_symlinks=True):
    time.sleep(delay)
    return shutil.copy2(source, destination, follow_symlinks=follow_symlinks)

def slow_copytree(source, destination, **options):
    os.makedirs(destination, exist_ok=True)
    shutil.copy2(os.path.join(source, "model.yaml"), os.path.join(destination, "model.yaml"))
    print("COPYING", os.path.basename(destination), flush=True)
    return real_copytree(source, destination, copy_function=slow_copy, **options)

shutil.copytree = slow_copytree
started = datetime.now(timezone.utc) - timedelta(days=3)
context = bentoml.models.create("iris", labels={"owner": "ml"})
with freeze_time(started):
    model = context.__enter__()
for index in range(shards):
    shard = Path(model.path) / f"shard-{index:03d}.bin"
    shard.write_bytes(os.urandom(2048))
    os.utime(shard, (started.timestamp(), started.timestamp()))  # written long ago; copy2 keeps that mtime
context.__exit__(None, None, None)
print("SAVED", model.tag.version, flush=True)
"""


def judge(home: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.bentoml_judge", "describe", str(home)],
        capture_output=True, text=True, env=child_environment(home), cwd=REPO, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.bentoml
def test_slow_real_bentoml_save_during_apply_is_never_deleted(tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    home = make_home(tmp_path)
    for day in range(1, 8):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day, hours=1), labels={"owner": "ml"})
    config = write_config(tmp_path, home, (
        '[[retention]]\nname = "ci"\nkeep_last = 2\n'
        '[[disk]]\nname = "budget"\nmax_store_size = "1KB"\n'
    ))
    shards = 40
    save = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, str(shards), "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=child_environment(home), cwd=REPO,
    )
    processes.append(save)
    assert save.stdout is not None
    first_line = save.stdout.readline()
    assert first_line.startswith("COPYING"), save.stderr.read() if save.stderr else first_line
    saving = first_line.split()[1]
    runs: list[tuple[bool, dict[str, Any]]] = []
    while save.poll() is None:
        code, stdout, stderr = finish(start(home, "apply", "--config", str(config), "--json", "--wait", "10"))
        assert code == 0, stderr
        runs.append((save.poll() is None, json.loads(stdout)))  # True: the whole run fell inside the copy
    assert save.wait() == 0, save.stderr.read() if save.stderr else ""
    assert save.stdout.read().split() == ["SAVED", saving]
    assert any(during_copy for during_copy, _ in runs), "no apply ran entirely while the save was still copying"
    code, stdout, stderr = finish(start(home, "apply", "--config", str(config), "--json"))
    assert code == 0, stderr
    runs.append((False, json.loads(stdout)))

    for _, result in runs:
        assert saving not in {action["version"] for action in result["actions"]}
        kept_reasons = [reason for kept in result["kept"] if kept["version"] == saving for reason in kept["reasons"]]
        assert any("directory modified within min_age" in reason for reason in kept_reasons), kept_reasons
    saved_dir = home / "models" / "iris" / saving
    assert sorted(path.name for path in saved_dir.iterdir()) == ["model.yaml", *(f"shard-{i:03d}.bin" for i in range(shards))]
    assert all(path.stat().st_size == 2048 for path in saved_dir.glob("shard-*"))
    assert {"v1", "v2", "v3", "v4", "v5", "v6", "v7"} - {v for _, v in version_dirs(home)}, "nothing was deleted at all"
    listed = judge(home)
    assert f"iris:{saving}" in listed["models"]
    assert listed["latest"]["iris"] == "iris:v1"
    assert datetime.fromisoformat(listed["created"][f"iris:{saving}"]) < NOW - timedelta(days=2)
