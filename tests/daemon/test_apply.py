from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from filelock import FileLock

from daemon.audit import read_records
from daemon.cli import main
from daemon.config import load_config
from daemon.errors import EXIT_ACTIONS_FAILED, EXIT_BUSY, EXIT_OK
from daemon.files import RemovalFailure
from daemon.store import Store
from daemon.trash import Trash
from tests.daemon.conftest import NOW
from tests.fakestore import add_bento, add_model
from tests.helpers.races import race_after_scan, run_apply, versions


def audit_records(tmp_path: Path) -> list[dict]:
    return list(read_records(tmp_path / "log" / "audit.jsonl"))


def test_apply_deletes_exactly_the_plan_and_audits_it(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config()
    assert main(["plan", "--config", str(config), "--json"]) == EXIT_OK
    planned = {action["version"] for action in json.loads(capsys.readouterr().out)["actions"]}
    assert planned == {"v2", "v3", "v4"}
    code, result = run_apply(config, capsys)
    assert code == EXIT_OK
    assert {(a["version"], a["outcome"], a["error"]) for a in result["actions"]} == {(v, "ok", None) for v in planned}
    assert versions(home) == {"v0", "v1"}
    assert (home / "models" / "iris" / "latest").read_text() == "v0"
    assert not any((home / ".retentiond" / "trash").iterdir())
    events = [record["event"] for record in audit_records(tmp_path)]
    assert events[0] == "run.started" and events[-1] == "run.finished"
    assert events.count("artifact.delete_intended") == 3 and events.count("artifact.deleted") == 3
    for record in audit_records(tmp_path):
        assert {"ts", "event", "run_id", "host", "pid"} <= set(record)
        if record["event"].startswith("artifact."):
            assert {"policy", "kind", "name", "version", "size_bytes", "reasons"} <= set(record)
    assert audit_records(tmp_path)[-1]["actions_ok"] == 3


def test_intent_is_durable_before_the_version_moves(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config()
    seen_at_rename: list[tuple[str, list[str]]] = []
    real_move = Store.move_to_trash

    def spying_move(self: Store, path: Path, run_id: str) -> Path:
        on_disk = [(r["event"], r.get("version")) for r in audit_records(tmp_path)]
        seen_at_rename.append((path.name, [event for event, version in on_disk if version == path.name]))
        return real_move(self, path, run_id)

    monkeypatch.setattr(Store, "move_to_trash", spying_move)
    assert run_apply(config, capsys)[0] == EXIT_OK
    assert len(seen_at_rename) == 3
    for _, events in seen_at_rename:
        assert events == ["artifact.delete_intended"]


def test_no_audit_no_action(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config()
    config.write_text(config.read_text().replace(str(tmp_path / "log" / "audit.jsonl"), "/dev/full"))
    code = main(["apply", "--config", str(config)])
    assert code == EXIT_ACTIONS_FAILED
    assert "cannot write the audit log /dev/full" in capsys.readouterr().err
    assert versions(home) == set(five_versions)


def test_busy_store_exits_75_and_names_the_holder(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config()
    store = Store(home)
    with store.locked():
        # A second lock object on the same file contends like another process would.
        assert main(["apply", "--config", str(config)]) == EXIT_BUSY
    error = capsys.readouterr().err
    assert "is busy" in error and f"pid {os.getpid()}" in error
    assert versions(home) == set(five_versions)


def test_lock_is_an_flock_on_the_documented_path(home: Path) -> None:
    with Store(home).locked():
        assert (home / ".retentiond" / "lock").exists()
        other = FileLock(home / ".retentiond" / "lock", timeout=0)
        with pytest.raises(Exception, match="could not be acquired"):
            other.acquire()


def test_referenced_pinned_and_latest_versions_survive(
    home: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for day in range(6):
        labels = {"retention": "keep"} if day == 4 else None
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1), labels=labels)
    add_bento(home, "svc", "b1", NOW - timedelta(days=2), ["iris:v3"])
    (home / "models" / "iris" / "latest").write_text("v2")  # someone pinned latest to an older version
    config = write_config('[[retention]]\nname = "ci"\nkinds = ["model"]\nkeep_last = 1\nkeep_labels = { retention = "keep" }\n')
    code, result = run_apply(config, capsys)
    assert code == EXIT_OK
    assert {a["version"] for a in result["actions"]} == {"v1", "v5"}
    assert versions(home) == {"v0", "v2", "v3", "v4"}
    assert (home / "models" / "iris" / "latest").read_text() == "v2"


def test_emptied_name_directory_is_removed(
    home: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for day in range(3):
        add_model(home, "old", f"v{day}", NOW - timedelta(days=40 + day))
    (home / "models" / "old" / "latest").unlink()
    config = write_config('[[retention]]\nname = "ci"\nkeep_newer_than = "7d"\nallow_remove_all = true\n')
    assert run_apply(config, capsys)[0] == EXIT_OK
    assert not (home / "models" / "old").exists()


def test_name_directory_is_listed_once_per_run_not_after_every_deletion(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import daemon.store

    listed: list[str] = []
    real = daemon.store.remove_name_dir_if_emptied

    def counting(name_dir: Path) -> bool:
        listed.append(name_dir.name)
        return real(name_dir)

    monkeypatch.setattr(daemon.store, "remove_name_dir_if_emptied", counting)
    assert run_apply(write_config(), capsys)[0] == EXIT_OK
    assert versions(home) == {"v0", "v1"}
    assert listed == ["iris"]  # three deletions, one listing at the end of the run


def test_a_name_someone_else_emptied_during_the_run_loses_its_directory(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def another_tool_deletes_the_kept_versions(store_home: Path) -> None:
        for kept in ("v0", "v1"):
            shutil.rmtree(store_home / "models" / "iris" / kept)

    race_after_scan(monkeypatch, another_tool_deletes_the_kept_versions)
    code, result = run_apply(write_config(), capsys)
    assert code == EXIT_OK
    assert {a["version"]: a["outcome"] for a in result["actions"]} == {"v2": "ok", "v3": "ok", "v4": "ok"}
    assert not (home / "models" / "iris").exists()  # as BentoML leaves a name whose last version went


def test_leftover_trash_is_emptied_at_the_start_of_a_run(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    leftover = home / ".retentiond" / "trash" / "deadrun" / "models" / "iris" / "zzz"
    leftover.mkdir(parents=True)
    (leftover / "weights.bin").write_bytes(b"x" * 10)
    assert run_apply(write_config(), capsys)[0] == EXIT_OK
    assert not (home / ".retentiond" / "trash" / "deadrun").exists()


def test_one_failing_deletion_is_recorded_and_the_rest_go_through(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_rename = os.rename

    def flaky_rename(source: object, destination: object) -> None:
        if str(source).endswith("/v3"):
            raise PermissionError(13, "Permission denied")
        real_rename(source, destination)  # type: ignore[arg-type]

    monkeypatch.setattr("daemon.store.os.rename", flaky_rename)
    code, result = run_apply(write_config(), capsys)
    assert code == EXIT_ACTIONS_FAILED
    outcomes = {a["version"]: (a["outcome"], a["error"]) for a in result["actions"]}
    assert outcomes["v3"] == ("failed", "cannot move to trash: Permission denied")
    assert outcomes["v2"] == ("ok", None) and outcomes["v4"] == ("ok", None)
    assert versions(home) == {"v0", "v1", "v3"}
    assert "artifact.delete_failed" in [r["event"] for r in audit_records(tmp_path)]


def test_version_changed_after_planning_is_skipped(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def a_save_and_a_rename(store_home: Path) -> None:
        (store_home / "models" / "iris" / "v4" / "new-file").write_text("a save is still going on")
        (store_home / "models" / "iris" / "v3").rename(store_home / "models" / "iris" / "v3-gone")

    race_after_scan(monkeypatch, a_save_and_a_rename)
    code, result = run_apply(write_config(), capsys)
    outcomes = {a["version"]: (a["outcome"], a["error"]) for a in result["actions"]}
    assert code == EXIT_OK
    assert outcomes["v4"] == ("skipped", "the version directory changed since it was planned")
    assert outcomes["v3"][0] == "skipped" and "gone" in outcomes["v3"][1]
    assert outcomes["v2"] == ("ok", None)
    assert "v4" in versions(home)


def test_latest_naming_a_deleted_version_moves_to_the_newest_remaining(home: Path, five_versions: list[str]) -> None:
    store = Store(home)
    trashed = store.move_to_trash(home / "models" / "iris" / "v0", "run1")
    assert store.repair_latest("model", "iris", "v0") == "v1"
    assert (home / "models" / "iris" / "latest").read_text() == "v1"
    trash = Trash(store)
    trash.finish(trashed)
    assert trash.drain() == []
    assert not trashed.exists()
    trash.close("run1")
    assert not (home / ".retentiond" / "trash" / "run1").exists()


def test_closing_a_run_keeps_its_trash_while_a_version_is_in_it(home: Path, five_versions: list[str]) -> None:
    store = Store(home)
    kept = store.move_to_trash(home / "models" / "iris" / "v0", "run1")
    purged = store.move_to_trash(home / "models" / "iris" / "v1", "run1")
    trash = Trash(store)
    trash.finish(purged)
    trash.close("run1")
    assert kept.is_dir()
    assert [t.version for t in trash.versions()] == ["v0"]
    trash.close("never-ran")
    assert (home / ".retentiond" / "trash" / "run1").is_dir()


def test_apply_with_an_unknown_policy_is_a_usage_error(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["apply", "--config", str(write_config()), "--policy", "nope"])
    assert exited.value.code == 2
    assert "unknown policy nope (configured: ci)" in capsys.readouterr().err
    assert versions(home) == set(five_versions)


def test_config_loads_from_the_test_fixture(write_config: Callable[..., Path], home: Path) -> None:
    assert load_config(str(write_config())).settings.store.home == home


def test_a_latest_left_naming_a_trashed_version_is_repaired_by_the_next_run(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    # What a kill between the rename and the latest repair leaves behind.
    Store(home).move_to_trash(home / "models" / "iris" / "v0", "deadrun")
    assert (home / "models" / "iris" / "latest").read_text() == "v0"
    assert main(["apply", "--config", str(write_config('[[retention]]\nname = "ci"\nkeep_last = 10\n'))]) == EXIT_OK
    assert (home / "models" / "iris" / "latest").read_text() == "v1"
    recovered = [r for r in audit_records(tmp_path) if r["event"] == "store.recovered"]
    assert recovered and "latest pointed at a trashed version" in recovered[0]["detail"]


def test_a_version_the_purge_cannot_remove_stays_in_the_trash_and_is_audited(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import daemon.purge

    real_remove = daemon.purge.remove_tree

    def failing_for_v3(path: Path) -> list[RemovalFailure]:
        if path.name == "v3":
            return [RemovalFailure(str(path / "model.yaml"), "Permission denied")]
        return real_remove(path)

    monkeypatch.setattr(daemon.purge, "remove_tree", failing_for_v3)
    code, result = run_apply(write_config(), capsys)
    assert code == EXIT_OK
    assert versions(home) == {"v0", "v1"}
    assert [t.version for t in Trash(Store(home)).versions()] == ["v3"]
    failures = [r for r in audit_records(tmp_path) if r["event"] == "trash.purge_failed"]
    assert len(failures) == 1 and failures[0]["version"] == "v3" and "Permission denied" in failures[0]["error"]
    monkeypatch.setattr(daemon.purge, "remove_tree", real_remove)
    assert run_apply(write_config(), capsys)[0] == EXIT_OK
    assert Trash(Store(home)).versions() == []


def test_moving_to_trash_makes_the_trash_again_if_it_vanished_mid_run(home: Path, five_versions: list[str]) -> None:
    store = Store(home)
    store.move_to_trash(home / "models" / "iris" / "v3", "run1")
    shutil.rmtree(home / ".retentiond" / "trash")
    trashed = store.move_to_trash(home / "models" / "iris" / "v4", "run1")
    assert trashed == home / ".retentiond" / "trash" / "run1" / "models" / "iris" / "v4" and trashed.is_dir()
    assert (home / ".retentiond" / "trash" / "run1" / "trashed_at").is_file()
    with pytest.raises(FileNotFoundError):
        store.move_to_trash(home / "models" / "iris" / "v4", "run1")


def test_a_name_whose_every_version_goes_is_listed_once_right_after_its_last_deletion(
    home: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not at the end of the run: BentoML users see the emptied name go as soon as its last version went.
    import daemon.store

    for day in range(3):
        add_model(home, "old", f"v{day}", NOW - timedelta(days=40 + day))
    (home / "models" / "old" / "latest").unlink()  # latest would protect one
    listed: list[str] = []
    swept: list[str] = []
    real_listing, real_sweep = daemon.store.remove_name_dir_if_emptied, Store.remove_emptied_name_dir
    monkeypatch.setattr(daemon.store, "remove_name_dir_if_emptied", lambda name_dir: listed.append(name_dir.name) or real_listing(name_dir))
    monkeypatch.setattr(Store, "remove_emptied_name_dir", lambda store, kind, name: swept.append(name) or real_sweep(store, kind, name))
    config = write_config('[[retention]]\nname = "ci"\nkeep_newer_than = "7d"\nallow_remove_all = true\n')
    assert run_apply(config, capsys)[0] == EXIT_OK
    assert not (home / "models" / "old").exists()
    assert (listed, swept) == (["old"], [])
