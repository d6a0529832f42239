"""A trash entry that cannot be purged is reported, skipped and retried next run; its bytes are never claimed.

Attacked with real unremovable files: ``chattr +i`` (root), a sub-directory owned by root inside a version
when retentiond runs as ``nobody``, and an NFS ``.nfsXXXX`` silly-rename file whose unlink fails with EBUSY
(a stand-in for ``os.unlink``: NFS itself is not available here).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from daemon.audit import read_records
from daemon.cli import main
from daemon.config import load_config
from daemon.errors import EXIT_ACTIONS_FAILED, EXIT_OK
from daemon.runner import apply_once
from policies.durations import format_bytes
from tests.daemon.conftest import NOW
from tests.fakestore import add_model, make_home

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


def apply_json(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["apply", "--config", str(config), "--json"])
    return code, json.loads(capsys.readouterr().out)


def status_json(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["status", "--config", str(config), "--json"]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def outcomes(result: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {action["version"]: (action["outcome"], action["error"]) for action in result["actions"]}


def runs(audit_log: Path) -> list[list[dict[str, Any]]]:
    """The audit records grouped by run, in order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in read_records(audit_log):
        grouped.setdefault(record["run_id"], []).append(record)
    return list(grouped.values())


def events(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [record for record in records if record["event"] == name]


def du_bytes(path: Path) -> int:
    """Disk usage of ``path`` as du counts it (what freeing counts)."""
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def age(paths: list[Path], created_at: datetime) -> None:
    """Give what a test adds to a version (and the version directory) the version's age: min_age looks at mtimes."""
    for path in paths:
        os.utime(path, (created_at.timestamp(), created_at.timestamp()))


def test_immutable_file_is_reported_not_claimed_retried_and_purged_once_removable(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], immutable: Callable[[Path], None],
) -> None:
    stuck_file = home / "models" / "iris" / "v3" / "weights-0.bin"
    immutable(stuck_file)
    config = write_config()
    audit_log = tmp_path / "log" / "audit.jsonl"

    code, result = apply_json(config, capsys)
    assert code == EXIT_OK  # every version is out of the store: the deletions did happen
    trashed_file = next((home / ".retentiond" / "trash").glob("*/models/iris/v3/weights-0.bin"))
    left = du_bytes(trashed_file.parent)  # what is left of v3 in the trash: its directory and the immutable file
    expected = f"{left} bytes on disk remain in the trash: cannot remove {trashed_file}: Operation not permitted; retried next run"
    assert outcomes(result) == {"v2": ("ok", None), "v3": ("ok", expected), "v4": ("ok", None)}
    assert any(expected in warning for warning in result["warnings"])
    (first,) = runs(audit_log)
    (failed,) = events(first, "trash.purge_failed")
    assert (failed["kind"], failed["name"], failed["version"], failed["size_bytes"], failed["disk_bytes"]) == (
        "model", "iris", "v3", 100, left)
    assert failed["path"] == str(trashed_file.parent)
    assert failed["error"] == f"cannot remove {trashed_file}: Operation not permitted"
    planned_bytes = sum(action["disk_bytes"] for action in result["actions"])  # freed: disk usage
    assert events(first, "run.finished")[0]["bytes_freed"] == planned_bytes - left

    for attempt in range(2):  # the next runs retry it, report it, and still delete what they should
        add_model(home, "iris", f"x{attempt}", NOW - timedelta(days=20 + attempt), set_latest=False)
        code, result = apply_json(config, capsys)
        assert code == EXIT_OK
        assert outcomes(result) == {f"x{attempt}": ("ok", None)}
        assert any(expected in warning for warning in result["warnings"])
        assert len(events(runs(audit_log)[-1], "trash.purge_failed")) == 1
        assert trashed_file.exists()
    stuck = status_json(config, capsys)["trash"]["stuck"]
    assert (stuck["entries"], stuck["size_bytes"], stuck["disk_bytes"]) == (1, 100, left)
    assert stuck["first_error"] == f"cannot remove {trashed_file}: Operation not permitted"

    subprocess.run(["chattr", "-i", str(trashed_file)], check=True)
    code, result = apply_json(config, capsys)
    assert code == EXIT_OK and result["warnings"] == []
    assert events(runs(audit_log)[-1], "trash.purge_failed") == []
    assert list((home / ".retentiond" / "trash").iterdir()) == []
    assert status_json(config, capsys)["trash"]["stuck"]["entries"] == 0


@pytest.fixture
def busy_nfs_files(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Make unlink of ``.nfsXXXX`` files fail with EBUSY, as NFS does while another client holds them open."""
    real_unlink = os.unlink
    busy = {"on": True}

    def unlink(path: Any, *, dir_fd: int | None = None) -> None:
        if busy["on"] and os.path.basename(os.fspath(path)).startswith(".nfs"):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), os.fspath(path))
        real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    return busy


def add_nfs_file(version_dir: Path, created_at: datetime, size: int = 300) -> Path:
    nfs_file = version_dir / ".nfs0000000000a1b2c300000001"
    nfs_file.write_bytes(b"n" * size)
    age([nfs_file, version_dir], created_at)
    return nfs_file


def test_busy_nfs_file_in_the_runner_api_counts_only_freed_bytes_and_goes_once_released(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], busy_nfs_files: dict[str, bool],
) -> None:
    add_nfs_file(home / "models" / "iris" / "v3", NOW - timedelta(days=4))
    settings = load_config(str(write_config())).settings

    result = apply_once(settings)
    by_version = {r.action.version: r for r in result.results}
    assert {version: r.outcome for version, r in by_version.items()} == {"v2": "ok", "v3": "ok", "v4": "ok"}
    (stuck,) = result.trash_stuck
    left = du_bytes(stuck.path)  # the trashed v3: its directory and the busy file
    deleted_bytes = sum(r.action.disk_bytes or 0 for r in result.results)
    assert result.counters()["bytes_freed"] == deleted_bytes - left
    assert "Device or resource busy" in (by_version["v3"].error or "") and by_version["v3"].bytes_left == left
    assert (stuck.version, stuck.size_bytes, stuck.disk_bytes) == ("v3", 300, left)

    again = apply_once(settings)  # the purge at run start meets it again: reported, no exception
    assert again.results == [] and [entry.version for entry in again.trash_stuck] == ["v3"]

    busy_nfs_files["on"] = False  # the other client closed the file
    assert apply_once(settings).trash_stuck == []
    assert list((home / ".retentiond" / "trash").iterdir()) == []


def test_restore_works_beside_a_stuck_entry_and_refuses_the_stuck_one_clearly(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], busy_nfs_files: dict[str, bool],
) -> None:
    add_nfs_file(home / "models" / "iris" / "v4", NOW - timedelta(days=5))
    keys = 'trash_retention = "1h"\n[daemon]\n'
    config = write_config('[[retention]]\nname = "ci"\nkeep_last = 4\n')
    config.write_text(config.read_text().replace("[daemon]\n", keys, 1))
    assert main(["apply", "--config", str(config)]) == EXIT_OK  # v4 goes into the trash, restorable for 1h
    (run_dir,) = (home / ".retentiond" / "trash").iterdir()
    (run_dir / "trashed_at").write_text((datetime.now(timezone.utc) - timedelta(hours=2)).isoformat())
    config.write_text(config.read_text().replace("keep_last = 4", "keep_last = 2"))
    assert main(["apply", "--config", str(config)]) == EXIT_OK  # v4's purge gets stuck; v2 and v3 go to the trash
    capsys.readouterr()

    assert main(["restore", "iris:v3", "--config", str(config)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert "restored model iris:v3" in out
    assert '"trash.purge_failed"' in err and "Device or resource busy" in err
    assert (home / "models" / "iris" / "v3" / "model.yaml").is_file()

    assert main(["restore", "iris:v4", "--config", str(config)]) == EXIT_ACTIONS_FAILED
    err = capsys.readouterr().err
    assert "iris:v4 cannot be restored: a purge of its copy in the trash failed part-way" in err
    assert "Traceback" not in err
    assert not (home / "models" / "iris" / "v4").exists()
    restore_runs = runs(tmp_path / "log" / "audit.jsonl")[-2:]
    assert [len(events(records, "trash.purge_failed")) for records in restore_runs] == [1, 1]


# ---- retentiond as an unprivileged user, with a directory of another owner inside a deleted version ----


@pytest.fixture
def nobody_root() -> Iterator[Path]:
    """A directory that ``nobody`` owns (tmp_path's parents are root's, 0700), removed afterwards."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run retentiond as nobody")
    root = Path(tempfile.mkdtemp(prefix="retentiond-nobody-"))
    try:
        root.chmod(0o755)
        os.chown(root, NOBODY, NOBODY)
        probe = as_nobody(["window", "Mon-Fri 00:00-24:00 UTC", "--at", "2026-11-30T10:00:00Z"])
        if probe.returncode != 0:
            pytest.skip(f"cannot run retentiond as nobody here: {probe.stderr.strip()[-300:]}")
        yield root
    finally:
        shutil.rmtree(root)


def as_nobody(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RETENTIOND_")}
    environment.update(PYTHONPATH=str(REPO), BENTOML_DO_NOT_TRACK="True", HOME="/nonexistent")
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-m", "daemon", *arguments],
        capture_output=True, text=True, cwd=REPO, env=environment, timeout=120,
    )


def give_to_nobody(path: Path) -> None:
    for directory, _, files in os.walk(path):
        os.chown(directory, NOBODY, NOBODY)
        for name in files:
            os.chown(os.path.join(directory, name), NOBODY, NOBODY)


def add_nobody_model(home: Path, version: str, created_at: datetime) -> Path:
    version_dir = add_model(home, "iris", version, created_at, set_latest=False)
    give_to_nobody(home / "models")
    return version_dir


def no_traceback(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
    return done


def test_unprivileged_run_meets_a_root_owned_directory_in_the_trash_and_carries_on(nobody_root: Path) -> None:
    home = make_home(nobody_root)
    for day in range(5):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1))
    blob = home / "models" / "iris" / "v3" / "blob"
    blob.mkdir(mode=0o755)
    (blob / "weights.bin").write_bytes(b"r" * 1000)
    age([blob / "weights.bin", blob, blob.parent], NOW - timedelta(days=4))
    give_to_nobody(home)
    os.chown(blob, 0, 0)
    os.chown(blob / "weights.bin", 0, 0)
    config = nobody_root / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n[daemon]\nstate_dir = "{nobody_root / "state"}"\n'
        f'audit_log = "{nobody_root / "log" / "audit.jsonl"}"\n[[retention]]\nname = "ci"\nkeep_last = 2\n'
    )
    audit_log = nobody_root / "log" / "audit.jsonl"

    first = no_traceback(as_nobody(["apply", "--config", str(config), "--json"]))
    assert first.returncode == EXIT_OK, first.stderr[-3000:]
    trashed = next((home / ".retentiond" / "trash").glob("*/models/iris/v3"))
    expected = f"cannot remove {trashed / 'blob' / 'weights.bin'}: Permission denied"
    left = du_bytes(trashed)  # v3's directory, the root-owned blob directory and its file
    result = json.loads(first.stdout)
    assert outcomes(result) == {
        "v2": ("ok", None), "v3": ("ok", f"{left} bytes on disk remain in the trash: {expected}; retried next run"),
        "v4": ("ok", None),
    }
    (records,) = runs(audit_log)
    assert [record["error"] for record in events(records, "trash.purge_failed")] == [expected]
    deleted_bytes = sum(action["disk_bytes"] for action in result["actions"])
    assert events(records, "run.finished")[0]["bytes_freed"] == deleted_bytes - left
    assert first.stderr.count('"trash.purge_failed"') == 1  # one log line per run, not one per file

    for attempt in range(2):  # later runs: the stuck entry is reported each time, other deletions go through
        if attempt == 1:  # with an undo window the stuck entry is still retried at once: it is no longer restorable
            config.write_text(config.read_text().replace("[daemon]\n", 'trash_retention = "7d"\n[daemon]\n', 1))
        add_nobody_model(home, f"x{attempt}", NOW - timedelta(days=20 + attempt))
        later = no_traceback(as_nobody(["apply", "--config", str(config), "--json"]))
        assert later.returncode == EXIT_OK, later.stderr[-3000:]
        assert outcomes(json.loads(later.stdout)) == {f"x{attempt}": ("ok", None)}
        assert [record["error"] for record in events(runs(audit_log)[-1], "trash.purge_failed")] == [expected]
        assert later.stderr.count('"trash.purge_failed"') == 1

    restored = no_traceback(as_nobody(["restore", "iris:x1", "--config", str(config)]))
    assert restored.returncode == EXIT_OK and "restored model iris:x1" in restored.stdout, restored.stderr[-3000:]
    assert expected in restored.stderr
    refused = no_traceback(as_nobody(["restore", "iris:v3", "--config", str(config)]))
    assert refused.returncode == EXIT_ACTIONS_FAILED
    assert "iris:v3 cannot be restored: a purge of its copy in the trash failed part-way" in refused.stderr
    status = no_traceback(as_nobody(["status", "--config", str(config), "--json"]))
    assert status.returncode == EXIT_OK
    stuck = json.loads(status.stdout)["trash"]["stuck"]
    assert (stuck["entries"], stuck["size_bytes"], stuck["disk_bytes"], stuck["first_error"]) == (1, 1000, left, expected)
    human = no_traceback(as_nobody(["status", "--config", str(config)]))
    assert f"1 entry cannot be purged ({format_bytes(left)} still on disk)" in " ".join(human.stdout.split())

    give_to_nobody(trashed)  # the operator fixes the ownership: the next run purges it and reports nothing
    fixed = no_traceback(as_nobody(["apply", "--config", str(config), "--json"]))
    assert fixed.returncode == EXIT_OK and json.loads(fixed.stdout)["warnings"] == []
    assert events(runs(audit_log)[-1], "trash.purge_failed") == []
    assert not trashed.exists()
    status = no_traceback(as_nobody(["status", "--config", str(config), "--json"]))
    assert json.loads(status.stdout)["trash"]["stuck"]["entries"] == 0


# ---- the daemon ----


def test_daemon_jobs_meeting_a_stuck_entry_log_it_and_later_jobs_still_run(
    tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    from tests.helpers.daemon_process import Daemon, store_bytes, wait_for

    home = make_home(tmp_path)
    for index in range(4):
        add_model(home, "iris", f"v{index}", NOW - timedelta(days=index + 1), files=2)
    stuck_dir = home / ".retentiond" / "trash" / "deadrun" / "models" / "iris" / "old"
    stuck_dir.mkdir(parents=True)
    (stuck_dir / "weights.bin").write_bytes(b"s" * 100)
    immutable(stuck_dir / "weights.bin")
    probe = make_home(tmp_path / "probe")
    add_model(probe, "grow", "g0", NOW, files=4, file_bytes=500)
    # Room for the latest version of each of the two names the test adds (a disk budget counts disk usage).
    budget = store_bytes(home) + 2 * store_bytes(probe) + 2000
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
        f'[[disk]]\nname = "budget"\nmax_store_size = "{budget}B"\ncheck_interval = "1s"\n'
    )
    audit_log = tmp_path / "audit.jsonl"

    def deleted() -> int:
        return len(events(list(read_records(audit_log)), "artifact.deleted")) if audit_log.exists() else 0

    daemon = Daemon(tmp_path, config)
    try:
        daemon.read_messages(until="READY=1")
        staging = make_home(tmp_path / "staging")
        for job in range(2):  # two over-budget jobs, each meeting the stuck entry at its start
            before = deleted()
            # A new name made aside and renamed in whole: the daemon fingerprints the store after a job, so a
            # store that changes while a job runs goes unseen for up to a minute (a race of its own).
            for index in range(6):
                add_model(staging, f"grow{job}", f"g{index}", NOW - timedelta(days=40 + index), files=4, file_bytes=500)
            (staging / "models" / f"grow{job}").rename(home / "models" / f"grow{job}")
            try:
                wait_for(lambda before=before: deleted() > before and store_bytes(home) <= budget, timeout=30)  # type: ignore[misc]
            except AssertionError:
                raise AssertionError(f"job {job}: store {store_bytes(home)} > budget {budget}; log:\n{daemon.logs()}") from None
            daemon.read_messages(until="STATUS=last run")
        failed = events(list(read_records(audit_log)), "trash.purge_failed")
        assert len({record["run_id"] for record in failed}) >= 2
        assert all(record["path"] == str(stuck_dir) and "Operation not permitted" in record["error"] for record in failed)
        assert daemon.stop() == 0
        logs = daemon.logs()
        assert '"trash.purge_failed"' in logs
        assert "run.crashed" not in logs and "Traceback" not in logs
    finally:
        daemon.close()


def test_disk_pressure_purge_meeting_a_stuck_entry_evicts_and_does_not_crash(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], busy_nfs_files: dict[str, bool],
) -> None:
    add_nfs_file(home / "models" / "iris" / "v3", NOW - timedelta(days=4))
    config = write_config()
    config.write_text(config.read_text().replace("[daemon]\n", 'trash_retention = "30d"\n[daemon]\n', 1))
    assert main(["apply", "--config", str(config), "--policy", "ci"]) == EXIT_OK  # v2-v4 wait in the trash
    capsys.readouterr()
    config.write_text(config.read_text() + '[[disk]]\nname = "pressure"\nhigh_watermark = "1%"\n')
    for _ in range(2):
        code, result = apply_json(config, capsys)
        assert code == EXIT_OK
        assert any("iris:v3 cannot be purged" in warning for warning in result["warnings"])
    assert [entry.name for entry in (home / ".retentiond" / "trash").glob("*/models/iris/*")] == ["v3"]
    assert {p.name for p in (home / "models" / "iris").iterdir() if p.is_dir()} == {"v0"}  # evicted; the floor holds
    last_run = runs(tmp_path / "log" / "audit.jsonl")[-1]
    assert [(r["runs"], r["stuck"]) for r in events(last_run, "trash.purged")] == [(0, 1)]
    assert len(events(last_run, "trash.purge_failed")) == 1  # met at run start and again under pressure: one record
