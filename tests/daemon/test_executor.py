"""The executor (daemon/executor.py) carrying out hand-made plans on a real store: each way an action ends.

Written for mutants of the mutation run (tests/mutation/README.md) in branches no other test reached.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from daemon.audit import AuditLog, read_records
from daemon.deployments import DeploymentActor
from daemon.executor import INTERRUPTED, NOT_STARTED, ActionResult, Actors, RunResult, execute
from daemon.inventory import scan_store
from daemon.ownership import OwnershipFile
from daemon.store import Store
from daemon.trash import Trash
from policies.model import Action, Artifact, Deployment, Plan, TrashPurge
from tests.daemon.conftest import NOW
from tests.fakestore import add_bento, add_model, make_home
from tests.helpers.effective_user import NOBODY, effective_user

if TYPE_CHECKING:
    from daemon.guards import RunGuards


@pytest.fixture
def actors(home: Path, tmp_path: Path) -> Iterator[Actors]:
    store = Store(home)
    audit = AuditLog(tmp_path / "audit.jsonl", "run-1")
    try:
        yield Actors(store=store, trash=Trash(store), audit=audit, run_id="run-1")
    finally:
        audit.close()


def delete(version: str, name: str = "iris") -> Action:
    return Action("delete", "model", name, version, "ci", ("not kept by any rule",), 100)


def run(home: Path, actors: Actors, *actions: Action, archive_dir: Path | None = None) -> RunResult:
    inventory = scan_store(home)
    if archive_dir is not None:
        actors = Actors(actors.store, actors.trash, actors.audit, actors.run_id, archive_dir=archive_dir)
    result = execute(Plan(at=NOW, actions=actions), inventory, actors)
    actors.trash.close(actors.run_id)
    return result


def outcomes(result: RunResult) -> list[tuple[str | None, str, str | None]]:
    return [(done.action.version, done.outcome, done.error) for done in result.results]


@pytest.fixture
def three(home: Path) -> None:
    for day, version in enumerate(("v2", "v1", "v0")):
        add_model(home, "iris", version, NOW - timedelta(days=day + 1))


def test_a_deployment_action_without_deployment_providers_is_skipped_and_said_why(home: Path, three: None, actors: Actors) -> None:
    stop = Action("terminate", "deployment", "staging-a", None, "nights", ("downtime",), provider="cloud")
    result = run(home, actors, stop)
    assert outcomes(result) == [(None, "skipped", "no deployment providers in this run")]
    assert result.results[0].action == stop


def test_a_deletion_of_a_version_the_scan_did_not_see_is_skipped_and_said_why(home: Path, three: None, actors: Actors) -> None:
    result = run(home, actors, delete("v9"))
    assert outcomes(result) == [("v9", "skipped", "not in the inventory this plan was made from")]


def test_a_version_that_went_between_the_recheck_and_the_move_was_deleted_by_someone_else(
    home: Path, three: None, actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_move = Store.move_to_trash

    def someone_else_first(store: Store, path: Path, run_id: str) -> Path:
        os.rename(path, home / "elsewhere")  # another tool takes it away at that very moment
        return real_move(store, path, run_id)

    monkeypatch.setattr(Store, "move_to_trash", someone_else_first)
    result = run(home, actors, delete("v0"))
    assert outcomes(result) == [("v0", "skipped", "already deleted by someone else")]


def test_a_deletion_whose_latest_repair_fails_is_ok_with_the_reason_and_its_copy_is_purged(
    home: Path, three: None, actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_repair(*args: object, **kwargs: object) -> str | None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Store, "repair_latest", failing_repair)
    result = run(home, actors, delete("v0"))
    assert outcomes(result) == [("v0", "ok", "deleted, but clean-up failed: Read-only file system")]
    assert result.results[0].action == delete("v0")
    assert not (home / "models" / "iris" / "v0").exists()
    assert list((home / ".retentiond" / "trash").glob("*/models/iris/v0")) == []


def test_a_version_that_cannot_be_archived_is_not_deleted(home: Path, tmp_path: Path, three: None, actors: Actors) -> None:
    not_a_directory = tmp_path / "archive"
    not_a_directory.write_text("")
    result = run(home, actors, delete("v0"), archive_dir=not_a_directory)
    assert outcomes(result) == [("v0", "failed", f"cannot archive to {not_a_directory}: File exists")]
    assert (home / "models" / "iris" / "v0" / "model.yaml").exists()


def test_an_archived_version_is_named_by_its_kind_name_and_version(home: Path, tmp_path: Path, three: None, actors: Actors) -> None:
    result = run(home, actors, delete("v0"), archive_dir=tmp_path / "archive")
    assert outcomes(result) == [("v0", "ok", None)]
    assert [path.name for path in (tmp_path / "archive").iterdir()] == ["iris-v0.tar.gz"]


def test_every_deletion_is_audited_as_intended_then_deleted(home: Path, tmp_path: Path, three: None, actors: Actors) -> None:
    run(home, actors, delete("v0"))
    actors.audit.sync()
    events = [(record["event"], record.get("action"), record.get("version")) for record in read_records(tmp_path / "audit.jsonl")]
    assert ("artifact.delete_intended", "delete", "v0") in events
    assert ("artifact.deleted", "delete", "v0") in events
    (outcome,) = [record for record in read_records(tmp_path / "audit.jsonl") if record["event"] == "artifact.deleted"]
    assert (outcome["outcome"], outcome["error"], outcome["policy"], outcome["kind"]) == ("ok", None, "ci", "model")


def test_a_disk_policy_deletion_whose_latest_repair_fails_is_purged_at_once_despite_the_undo_window(
    home: Path, three: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_repair(*args: object, **kwargs: object) -> str | None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Store, "repair_latest", failing_repair)
    store = Store(home)
    audit = AuditLog(tmp_path / "audit.jsonl", "run-1")
    trash = Trash(store, retention=timedelta(days=7), purging_policies=frozenset({"pressure"}))
    pressure = Action("delete", "model", "iris", "v0", "pressure", ("filesystem 99% used",), 100)
    try:
        execute(Plan(at=NOW, actions=(pressure,)), scan_store(home), Actors(store, trash, audit, "run-1"))
        trash.drain()
    finally:
        audit.close()
    assert list((home / ".retentiond" / "trash").glob("*/models/iris/v0")) == []


class Recorder:
    """A RunProgress that remembers what it was told."""

    def __init__(self) -> None:
        self.plans: list[Plan] = []
        self.outcomes: list[str] = []

    def begin(self, plan: Plan) -> None:
        self.plans.append(plan)

    def advance(self, result: ActionResult) -> None:
        self.outcomes.append(result.outcome)


def test_a_run_counts_each_outcome_and_tells_its_progress(home: Path, tmp_path: Path, three: None, actors: Actors) -> None:
    not_a_directory = tmp_path / "archive"
    not_a_directory.write_text("")
    archiving = Actors(actors.store, actors.trash, actors.audit, actors.run_id, archive_dir=not_a_directory)
    plan = Plan(at=NOW, actions=(delete("v0"), delete("v9")))
    progress = Recorder()
    result = execute(plan, scan_store(home), archiving, progress)
    assert result.run_id == "run-1"
    assert progress.plans == [plan] and progress.outcomes == ["failed", "skipped"]
    assert result.counters() == {
        "actions_planned": 2, "actions_ok": 0, "actions_failed": 1, "actions_skipped": 1, "actions_not_started": 0,
        "bytes_freed": 0, "kept": 0,
    }


def test_a_run_stopped_before_its_first_batch_reports_every_action_as_not_started(home: Path, three: None, actors: Actors) -> None:
    stop = threading.Event()
    stop.set()
    result = execute(Plan(at=NOW, actions=(delete("v0"), delete("v1"))), scan_store(home), actors, stop=stop)
    data = result.to_dict()
    assert (data["interrupted"], data["interrupted_during"]) == (True, "actions")
    assert [(action["version"], action["outcome"], action["error"]) for action in data["actions"]] == [
        ("v0", "skipped", NOT_STARTED), ("v1", "skipped", NOT_STARTED),
    ]
    assert result.counters()["actions_not_started"] == 2
    assert (home / "models" / "iris" / "v0").is_dir()


def test_an_emptied_name_directory_that_cannot_be_removed_is_audited(
    home: Path, tmp_path: Path, three: None, actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(store: Store, kind: str, name: str) -> bool:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(Store, "remove_emptied_name_dir", busy)
    run(home, actors, delete("v0"))  # v1 and v2 remain: the name is swept at the end of the run
    actors.audit.sync()
    details = [record["detail"] for record in read_records(tmp_path / "audit.jsonl") if record["event"] == "store.cleanup_failed"]
    assert details == ["cannot remove the emptied model directory iris: Device or resource busy"]


class StopAfterFirst(Recorder):
    """A RunProgress that asks the run to stop once the first action is done (a SIGTERM mid-batch)."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def advance(self, result: ActionResult) -> None:
        super().advance(result)
        self.stop.set()


def test_a_run_stopped_mid_batch_finishes_the_action_in_progress_and_records_the_rest_as_interrupted(
    home: Path, tmp_path: Path, three: None, actors: Actors
) -> None:
    stop = threading.Event()
    progress = StopAfterFirst(stop)
    plan = Plan(at=NOW, actions=(delete("v0"), delete("v1"), delete("v2")))
    result = execute(plan, scan_store(home), actors, progress, stop)
    actors.audit.sync()
    assert outcomes(result) == [("v0", "ok", None), ("v1", "skipped", INTERRUPTED), ("v2", "skipped", INTERRUPTED)]
    assert [done.action for done in result.results] == list(plan.actions)
    assert (result.interrupted, result.interrupted_during) == (True, "actions")
    assert result.not_started() == ()
    assert progress.outcomes == ["ok"]  # the interrupted ones are not progress
    assert not (home / "models" / "iris" / "v0").exists()
    assert (home / "models" / "iris" / "v1").is_dir() and (home / "models" / "iris" / "v2").is_dir()
    records = [record for record in read_records(tmp_path / "audit.jsonl") if record["event"] == "artifact.delete_skipped"]
    assert [
        (record["version"], record["action"], record["policy"], record["outcome"], record["error"]) for record in records
    ] == [("v1", "delete", "ci", "skipped", INTERRUPTED), ("v2", "delete", "ci", "skipped", INTERRUPTED)]


def test_a_version_a_process_stands_in_is_skipped_and_names_the_process(
    home: Path, three: None, actors: Actors
) -> None:
    holder = subprocess.Popen(["sleep", "60"], cwd=home / "models" / "iris" / "v0")
    try:
        result = run(home, actors, delete("v0"))
    finally:
        holder.kill()
        holder.wait()
    assert [(done.action, done.outcome) for done in result.results] == [(delete("v0"), "skipped")]
    assert (result.results[0].error or "").startswith(f"in use by pid {holder.pid} (sleep 60)")
    assert (home / "models" / "iris" / "v0" / "model.yaml").exists()


def test_a_version_a_process_has_a_file_of_open_is_skipped_and_names_the_process(
    home: Path, three: None, actors: Actors
) -> None:
    # Its working directory is elsewhere: only the probe of the version's files finds it.
    with (home / "models" / "iris" / "v0" / "model.yaml").open("rb") as weights:
        holder = subprocess.Popen(["sleep", "60"], stdin=weights, cwd="/")
    try:
        result = run(home, actors, delete("v0"))
    finally:
        holder.kill()
        holder.wait()
    assert [(done.action, done.outcome) for done in result.results] == [(delete("v0"), "skipped")]
    assert (result.results[0].error or "").startswith(f"in use by pid {holder.pid} (sleep 60)")
    assert (home / "models" / "iris" / "v0" / "model.yaml").exists()


class KeepUnpushed:
    """Stand-in for RunGuards whose push-before-delete refuses every version, auditing that it did."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def collects(self, action: Action) -> bool:
        return False

    def before_delete(self, artifact: Artifact, audit: AuditLog) -> tuple[str, str] | None:
        audit.record("artifact.push_failed", version=artifact.version)
        self.asked.append(artifact.version)
        return "failed", "not pushed: BentoCloud answered 503"


def test_a_version_the_push_before_delete_refuses_keeps_the_guards_outcome_and_reason(
    home: Path, tmp_path: Path, three: None, actors: Actors
) -> None:
    guards = KeepUnpushed()
    guarded = Actors(actors.store, actors.trash, actors.audit, actors.run_id, guards=cast("RunGuards", guards))
    result = run(home, guarded, delete("v0"))
    actors.audit.sync()
    assert [(done.action, done.outcome, done.error) for done in result.results] == [
        (delete("v0"), "failed", "not pushed: BentoCloud answered 503")
    ]
    assert guards.asked == ["v0"]
    assert [record["event"] for record in read_records(tmp_path / "audit.jsonl")][-2:] == [
        "artifact.push_failed", "artifact.delete_failed",
    ]
    assert (home / "models" / "iris" / "v0").is_dir()


class DeletingProvider:
    """A provider whose deployments all go when asked."""

    name = "cloud"

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def list(self) -> list[Deployment]:
        return [Deployment("cloud", "staging-a", "terminated", identity="uid-1")]

    def terminate(self, name: str) -> None:
        raise AssertionError("not planned")

    restart = terminate

    def delete(self, name: str) -> None:
        self.deleted.append(name)


def test_a_deleted_deployment_is_audited_as_deployment_deleted(home: Path, tmp_path: Path, actors: Actors) -> None:
    provider = DeletingProvider()
    ownership_file = OwnershipFile(tmp_path / "state")
    deployer = DeploymentActor({"cloud": provider}, ownership_file, ownership_file.load(), [], provider.list(), NOW)
    acting = Actors(actors.store, actors.trash, actors.audit, actors.run_id, deployments=deployer)
    gone = Action("delete_deployment", "deployment", "staging-a", None, "idle", ("inactive 30 days",), provider="cloud")
    result = run(home, acting, gone)
    actors.audit.sync()
    assert [(done.outcome, done.error) for done in result.results] == [("ok", None)] and provider.deleted == ["staging-a"]
    events = [(record["event"], record.get("name"), record.get("provider")) for record in read_records(tmp_path / "audit.jsonl")]
    assert events[-2:] == [
        ("deployment.delete_deployment_intended", "staging-a", "cloud"), ("deployment.deleted", "staging-a", "cloud"),
    ]


def test_a_model_two_bentos_started_using_after_the_scan_is_skipped_naming_both(
    home: Path, three: None, actors: Actors
) -> None:
    inventory = scan_store(home)
    add_bento(home, "svc-a", "b1", NOW, ["iris:v0"])
    add_bento(home, "svc-b", "b1", NOW, ["iris:v0"])
    result = execute(Plan(at=NOW, actions=(delete("v0"),)), inventory, actors)
    assert outcomes(result) == [
        ("v0", "skipped", "bentos changed since the plan; now referenced by bento svc-a:b1, svc-b:b1")
    ]


def test_the_planned_trash_purge_goes_first_and_is_audited_with_what_it_did(
    home: Path, tmp_path: Path, three: None, actors: Actors
) -> None:
    old = actors.store.move_to_trash(home / "models" / "iris" / "v0", "run-old")
    purge = TrashPurge(runs=("run-old", "run-gone"), size_bytes=4096, reason="undo window over")
    result = execute(Plan(at=NOW, actions=(), trash_purge=purge), scan_store(home), actors)
    actors.audit.sync()
    assert result.results == [] and not old.parents[2].exists()
    (record,) = [record for record in read_records(tmp_path / "audit.jsonl") if record["event"] == "trash.purged"]
    assert {key: record[key] for key in ("reason", "runs", "planned_runs", "size_bytes", "stuck")} == {
        "reason": "undo window over", "runs": 1, "planned_runs": 2, "size_bytes": 4096, "stuck": 0,
    }


def test_without_a_planned_trash_purge_entries_an_earlier_run_could_not_purge_are_still_retried(
    home: Path, tmp_path: Path, three: None, actors: Actors
) -> None:
    stuck = actors.store.move_to_trash(home / "models" / "iris" / "v0", "run-old")
    trash = Trash(actors.store, timedelta(days=7), retry=[stuck])
    execute(Plan(at=NOW, actions=()), scan_store(home), Actors(actors.store, trash, actors.audit, actors.run_id))
    actors.audit.sync()
    assert not stuck.exists()
    assert "trash.purged" not in [record["event"] for record in read_records(tmp_path / "audit.jsonl")]


def test_a_deletion_whose_clean_up_failed_and_whose_trash_copy_is_stuck_reports_both(
    home: Path, three: None, actors: Actors, monkeypatch: pytest.MonkeyPatch, immutable: Callable[[Path], None]
) -> None:
    real_move = Store.move_to_trash

    def move_then_pin(store: Store, path: Path, run_id: str) -> Path:
        trashed = real_move(store, path, run_id)
        immutable(trashed / "weights-0.bin")  # the purge of its copy will fail
        return trashed

    def failing_repair(*args: object, **kwargs: object) -> str | None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Store, "move_to_trash", move_then_pin)
    monkeypatch.setattr(Store, "repair_latest", failing_repair)
    result = run(home, actors, delete("v0"))
    (done,) = result.results
    assert done.outcome == "ok" and done.bytes_left > 0
    assert (done.error or "").startswith("deleted, but clean-up failed: Read-only file system; ")
    stuck_file = home / ".retentiond" / "trash" / "run-1" / "models" / "iris" / "v0" / "weights-0.bin"
    assert (done.error or "").endswith(
        f" bytes on disk remain in the trash: cannot remove {stuck_file}: Operation not permitted; retried next run"
    )


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to act as two other users")
def test_a_run_as_nobody_deletes_a_version_whose_0700_directory_keeps_out_the_user_of_a_process_it_cannot_read() -> None:
    # The store lies where user nobody can reach it (/dev/shm); a process of another user (65533) is one nobody
    # cannot read, and the 0700 version directories keep that user out, so the run as nobody may delete.
    base = Path(tempfile.mkdtemp(prefix="retentiond-passage-", dir="/dev/shm"))  # 1777 also in the mutation sandbox
    other = None
    try:
        os.chmod(base, 0o755)
        home = make_home(base)
        for day, version in enumerate(("v2", "v1", "v0")):
            add_model(home, "iris", version, NOW - timedelta(days=day + 1))
        for path in (base, *base.rglob("*")):
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
        other = subprocess.Popen(["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups", "sleep", "60"], cwd="/")
        with effective_user(NOBODY):
            store = Store(home)
            audit = AuditLog(base / "audit.jsonl", "run-1")
            try:
                result = execute(Plan(at=NOW, actions=(delete("v0"),)), scan_store(home), Actors(store, Trash(store), audit, "run-1"))
            finally:
                audit.close()
        assert outcomes(result) == [("v0", "ok", None)]
        assert not (home / "models" / "iris" / "v0").exists()
    finally:
        if other is not None:
            other.kill()
            other.wait()
        shutil.rmtree(base, ignore_errors=True)


def test_the_audit_records_of_a_deletion_carry_the_whole_action_and_no_provider(
    home: Path, tmp_path: Path, three: None, actors: Actors
) -> None:
    action = Action("delete", "model", "iris", "v0", "ci", ("not kept by any rule", "older than 30d"), 100, disk_bytes=4096)
    run(home, actors, action)
    actors.audit.sync()
    expected = {
        "action": "delete", "policy": "ci", "kind": "model", "name": "iris", "version": "v0", "size_bytes": 100,
        "disk_bytes": 4096, "reasons": ["not kept by any rule", "older than 30d"],
    }
    records = {record["event"]: record for record in read_records(tmp_path / "audit.jsonl")}
    for event in ("artifact.delete_intended", "artifact.deleted"):
        assert {key: records[event].get(key) for key in expected} == expected
        assert "provider" not in records[event]
