"""The trash (daemon/trash.py, daemon/purge.py) on a real store: purge, retry, restore, recovery after a crash.

Each test names a rule of the trash; tests/mutation/README.md tells which mutant made it necessary.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.files import RemovalFailure
from daemon.inventory import tree_usage
from daemon.layout import TRASHED_AT_FILE
from daemon.purge import Purger, StuckEntry
from daemon.store import SkipAction, Store
from daemon.trash import Trash
from tests.daemon.conftest import NOW
from tests.fakestore import add_bento, add_model


def trash_of(home: Path) -> Path:
    return home / ".retentiond" / "trash"


def trashed(home: Path, name: str, version: str, run_id: str, kind_dir: str = "models") -> Path:
    """Move a version of the test store into the trash run ``run_id``; return where it went."""
    return Store(home).move_to_trash(home / kind_dir / name / version, run_id)


def refuse_listing(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Make ``os.scandir`` of ``directory`` fail with EACCES, as for another user's directory (root lists any)."""
    real_scandir = os.scandir

    def refusing(path: object = ".") -> object:
        if os.fspath(path) == str(directory):  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", str(directory))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", refusing)


# --- purge -------------------------------------------------------------------------------------------------


def test_purge_counts_each_trash_run_that_went_completely(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=2))
    add_model(home, "iris", "v2", NOW - timedelta(days=1))
    trashed(home, "iris", "v1", "run-a")
    trashed(home, "iris", "v2", "run-b")
    assert Trash(Store(home)).purge(["run-a", "run-b"]) == 2
    assert list(trash_of(home).iterdir()) == []


def test_a_trash_run_purged_only_in_part_keeps_its_trashed_at_and_counts_as_not_gone(
    home: Path, immutable: Callable[[Path], None]
) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=2))
    add_model(home, "iris", "v2", NOW - timedelta(days=1))
    stuck_version = trashed(home, "iris", "v1", "run-a")
    trashed(home, "iris", "v2", "run-a")
    marker = trash_of(home) / "run-a" / TRASHED_AT_FILE
    stamp = marker.read_text()
    immutable(stuck_version / "weights-0.bin")

    trash = Trash(Store(home))
    assert trash.purge(["run-a"]) == 0
    assert marker.read_text() == stamp  # the marker goes last: the undo window still dates the run
    assert [entry.path for entry in trash.stuck] == [stuck_version]
    assert not (trash_of(home) / "run-a" / "models" / "iris" / "v2").exists()


def test_a_stuck_entry_that_a_later_purge_of_its_run_removes_is_no_longer_stuck(
    home: Path, immutable: Callable[[Path], None]
) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=2))
    stuck_version = trashed(home, "iris", "v1", "run-a")
    immutable(stuck_version / "weights-0.bin")
    trash = Trash(Store(home))
    trash.purge(["run-a"])
    assert [entry.path for entry in trash.stuck] == [stuck_version]

    subprocess.run(["chattr", "-i", str(stuck_version / "weights-0.bin")], check=True)
    assert trash.purge(["run-a"]) == 1
    assert trash.stuck == []


def test_a_trash_run_that_vanished_before_its_purge_counts_as_not_purged_by_this_run(home: Path) -> None:
    assert Trash(Store(home))._purge_run(trash_of(home) / "gone") == 0


def test_a_trash_run_that_cannot_be_listed_is_reported_stuck_and_kept(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root can list any directory; a stand-in for os.scandir refuses this one as it would for another user.
    add_model(home, "iris", "v1", NOW - timedelta(days=2))
    run_dir = trashed(home, "iris", "v1", "run-a").parents[2]
    refuse_listing(monkeypatch, run_dir)
    trash = Trash(Store(home))
    assert trash.purge(["run-a"]) == 0
    (entry,) = trash.stuck
    assert entry.path == run_dir
    assert entry.error == f"cannot remove {run_dir}: Permission denied"
    assert (entry.kind, entry.name, entry.version) == (None, None, None)
    assert entry.describe() == (
        f"trash entry {run_dir} cannot be purged: {entry.disk_bytes} bytes on disk remain in the trash: "
        f"cannot remove {run_dir}: Permission denied; retried next run"
    )
    monkeypatch.undo()
    assert (run_dir / "models" / "iris" / "v1" / "model.yaml").exists()


def test_a_trash_that_cannot_be_listed_is_reported_stuck_and_nothing_is_purged(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=2))
    copy = trashed(home, "iris", "v1", "run-a")
    refuse_listing(monkeypatch, trash_of(home))
    trash = Trash(Store(home))
    assert trash.purge(["run-a"]) == 0
    assert [(entry.path, entry.error) for entry in trash.stuck] == [
        (trash_of(home), f"cannot remove {trash_of(home)}: Permission denied")
    ]
    monkeypatch.undo()
    assert copy.is_dir()


def test_closing_a_run_that_made_its_trash_directory_but_moved_nothing_there_removes_it(home: Path) -> None:
    store = Store(home)
    run_dir = store.make_trash_run("run-a")
    Trash(store).close("run-a")
    assert not run_dir.exists()


def test_a_trash_run_without_its_marker_is_dated_by_its_directory_as_an_aware_instant(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=2))
    run_dir = trashed(home, "iris", "v1", "run-a").parents[2]
    (run_dir / TRASHED_AT_FILE).unlink()
    then = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    os.utime(run_dir, (then.timestamp(), then.timestamp()))
    (run,) = Trash(Store(home)).runs()
    assert run.trashed_at == then and run.trashed_at.tzinfo is not None


def test_trash_runs_are_listed_with_their_marker_their_disk_usage_and_the_bytes_of_entries_to_retry(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=2))
    add_model(home, "iris", "v3", NOW - timedelta(days=1))
    store = Store(home, clock=lambda: datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc))
    retried = store.move_to_trash(home / "models" / "iris" / "v1", "run-a")
    store.move_to_trash(home / "models" / "iris" / "v2", "run-a")
    store.move_to_trash(home / "models" / "iris" / "v3", "run-b")
    runs = sorted(Trash(store, retry=[retried]).runs(), key=lambda run: run.name)
    assert [(run.name, run.trashed_at) for run in runs] == [
        ("run-a", datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)), ("run-b", datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)),
    ]
    assert [run.size_bytes for run in runs] == [tree_usage(trash_of(home) / name)[1] for name in ("run-a", "run-b")]
    assert [run.stuck_bytes for run in runs] == [tree_usage(retried)[1], 0]
    assert 0 < runs[0].stuck_bytes < runs[0].size_bytes


def test_trash_runs_count_the_bytes_a_failed_purge_left_as_stuck(home: Path, immutable: Callable[[Path], None]) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    copy = trashed(home, "iris", "v1", "run-a")
    immutable(copy / "weights-0.bin")
    trash = Trash(Store(home))
    trash.purge(["run-a"])
    (run,) = trash.runs()
    (entry,) = trash.stuck
    assert run.stuck_bytes == entry.disk_bytes == tree_usage(copy)[1] > 0


def test_a_purge_asked_to_stop_starts_no_trash_run(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    copy = trashed(home, "iris", "v1", "run-a")
    stop = threading.Event()
    stop.set()
    assert Trash(Store(home), stop=stop).purge(["run-a"]) == 0
    assert copy.is_dir()


def test_a_purge_removes_only_the_runs_it_is_given(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=2))
    trashed(home, "iris", "v1", "run-a")
    kept = trashed(home, "iris", "v2", "run-b")
    assert Trash(Store(home)).purge(["run-a", "run-c"]) == 1
    assert [path.name for path in trash_of(home).iterdir()] == ["run-b"] and kept.is_dir()


def test_a_retried_entry_goes_with_its_emptied_parents_but_not_with_a_sibling_still_there(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=2))
    add_model(home, "rose", "v1", NOW - timedelta(days=2))
    first = trashed(home, "iris", "v1", "run-a")
    second = trashed(home, "iris", "v2", "run-a")
    rose = trashed(home, "rose", "v1", "run-b")
    trash = Trash(Store(home), retry=[first, rose])
    assert trash.purge([]) == 0
    assert not first.exists() and second.is_dir()
    assert not (trash_of(home) / "run-b").exists()  # its marker alone does not keep an emptied run
    assert trash.stuck == []


def test_a_retry_entry_inside_a_run_purged_in_the_same_call_does_not_stop_the_retry_of_the_others(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=2))
    copy = trashed(home, "iris", "v1", "run-a")
    later = trashed(home, "iris", "v2", "run-b")
    trash = Trash(Store(home), retry=[copy, later])
    assert trash.purge(["run-a"]) == 1
    assert not trash_of(home).joinpath("run-a").exists() and not later.exists() and trash.stuck == []


def test_a_retry_entry_of_a_run_whose_purge_just_failed_is_not_tried_again_in_the_same_call(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root can list any directory; a stand-in for os.scandir refuses the run as it would for another user.
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    copy = trashed(home, "iris", "v1", "run-a")
    run_dir = trash_of(home) / "run-a"
    refuse_listing(monkeypatch, run_dir)
    trash = Trash(Store(home), retry=[copy])
    assert trash.purge(["run-a"]) == 0
    assert [entry.path for entry in trash.stuck] == [run_dir]
    monkeypatch.undo()
    assert (copy / "model.yaml").exists()  # left for the next run, with its run


def test_a_stuck_entry_that_its_retry_removes_is_no_longer_stuck(home: Path, immutable: Callable[[Path], None]) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    copy = trashed(home, "iris", "v1", "run-a")
    immutable(copy / "weights-0.bin")
    trash = Trash(Store(home), retry=[copy])
    trash.finish(copy, "ci")
    assert [entry.path for entry in trash.drain()] == [copy]
    subprocess.run(["chattr", "-i", str(copy / "weights-0.bin")], check=True)
    trash.purge([])
    assert trash.stuck == [] and not copy.exists()


# --- entries to retry (they come from a state file: never trusted) ------------------------------------------


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep")
    return victim


def test_a_retry_entry_outside_the_trash_is_ignored(home: Path, victim: Path) -> None:
    trash = Trash(Store(home), retry=[victim])
    trash.purge([])
    assert (victim / "precious").exists() and trash.stuck == []


def test_a_retry_entry_that_climbs_out_of_the_trash_with_dot_dot_is_ignored(home: Path, victim: Path) -> None:
    trash_of(home).mkdir(parents=True)
    climbing = trash_of(home) / ".." / ".." / ".." / victim.name
    assert climbing.resolve() == victim.resolve()
    Trash(Store(home), retry=[climbing]).purge([])
    assert (victim / "precious").exists()


def test_a_retry_entry_behind_a_symlink_in_the_trash_is_ignored(home: Path, victim: Path) -> None:
    trash_of(home).mkdir(parents=True)
    (trash_of(home) / "run-a").symlink_to(victim, target_is_directory=True)
    Trash(Store(home), retry=[trash_of(home) / "run-a" / "precious"]).purge([])
    assert (victim / "precious").exists()


def test_the_trash_itself_is_never_a_retry_entry(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=2))
    trashed(home, "iris", "v1", "run-a")
    trash = Trash(Store(home), retry=[trash_of(home)])
    assert trash.purge([]) == 0
    assert (trash_of(home) / "run-a" / "models" / "iris" / "v1").is_dir()


# --- the purge worker -----------------------------------------------------------------------------------------


def test_the_purge_worker_removes_what_it_is_handed_without_a_stop_event(tmp_path: Path) -> None:
    entry = tmp_path / "entry"
    (entry / "sub").mkdir(parents=True)
    purger = Purger()
    purger.put(entry)
    assert purger.join() == [] and not entry.exists()


def test_the_purge_worker_leaves_everything_once_stop_is_set(tmp_path: Path) -> None:
    entry = tmp_path / "entry"
    entry.mkdir()
    stop = threading.Event()
    stop.set()
    purger = Purger(stop)
    purger.put(entry)
    assert purger.join() == [] and entry.is_dir()


def test_the_purge_worker_reports_an_unexpected_error_instead_of_dying_silently(tmp_path: Path) -> None:
    odd = Path(f"{tmp_path}/nul\0byte")  # os.lstat raises ValueError, not OSError
    purger = Purger()
    purger.put(odd)
    assert purger.join() == [RemovalFailure(str(odd), "ValueError: embedded null byte")]


def test_the_purge_worker_is_a_daemon_thread_named_for_dumps() -> None:
    # A daemon thread: a process that dies mid-purge does not wait for it (the next run empties the trash).
    # Its name is what py-spy and faulthandler dumps show an operator.
    purger = Purger()
    try:
        (worker,) = [thread for thread in threading.enumerate() if thread.name == "retentiond-trash"]
        assert worker.daemon
    finally:
        purger.join()


# --- versions and restore --------------------------------------------------------------------------------------


def test_trashed_versions_are_listed_most_recently_trashed_first_with_their_size(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3), files=1, file_bytes=10)
    add_model(home, "iris", "v2", NOW - timedelta(days=2), files=1, file_bytes=20)
    for version, run_id, day in (("v1", "run-old", 1), ("v2", "run-new", 2)):
        run_dir = trashed(home, "iris", version, run_id).parents[2]
        (run_dir / TRASHED_AT_FILE).write_text(f"2026-01-0{day}T00:00:00+00:00")
    listed = [(item.version, item.size_bytes) for item in Trash(Store(home)).versions()]
    yaml_size = {v: (home / ".retentiond" / "trash" / r / "models/iris" / v / "model.yaml").stat().st_size
                 for v, r in (("v1", "run-old"), ("v2", "run-new"))}
    assert listed == [("v2", 20 + yaml_size["v2"]), ("v1", 10 + yaml_size["v1"])]


def test_a_trashed_name_that_cannot_be_listed_does_not_hide_the_rest_of_the_trash(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root can list any directory; a stand-in for os.scandir refuses one as it would for another user.
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "rose", "v1", NOW - timedelta(days=3))
    trashed(home, "iris", "v1", "run-a")
    trashed(home, "rose", "v1", "run-a")
    refused = trash_of(home) / "run-a" / "models" / "iris"
    refuse_listing(monkeypatch, refused)
    assert [(version.name, version.version) for version in Trash(Store(home)).versions()] == [("rose", "v1")]


def test_restore_takes_the_most_recently_trashed_copy(home: Path) -> None:
    add_model(home, "iris", "v0", NOW - timedelta(days=9))
    for run_id, day, content in (("run-old", 1, b"old"), ("run-new", 2, b"new")):
        add_model(home, "iris", "v1", NOW - timedelta(days=3), set_latest=False)
        (home / "models/iris/v1/weights-0.bin").write_bytes(content)
        run_dir = trashed(home, "iris", "v1", run_id).parents[2]
        (run_dir / TRASHED_AT_FILE).write_text(f"2026-01-0{day}T00:00:00+00:00")
    Trash(Store(home)).restore("model", "iris", "v1")
    assert (home / "models/iris/v1/weights-0.bin").read_bytes() == b"new"


def test_restore_of_a_name_trashed_as_a_model_and_as_a_bento_asks_which(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_bento(home, "iris", "v1", NOW - timedelta(days=3), [])
    trashed(home, "iris", "v1", "run-a")
    trashed(home, "iris", "v1", "run-a", kind_dir="bentos")
    with pytest.raises(SkipAction) as refused:
        Trash(Store(home)).restore(None, "iris", "v1")
    assert str(refused.value) == "iris:v1 is in the trash as a model and as a bento; say which with --kind"
    assert Trash(Store(home)).restore("bento", "iris", "v1").kind == "bento"


def test_restore_refuses_a_trashed_copy_that_is_not_a_complete_version(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    copy = trashed(home, "iris", "v1", "run-a")
    (copy / "model.yaml").unlink()
    with pytest.raises(SkipAction) as refused:
        Trash(Store(home)).restore("model", "iris", "v1")
    assert str(refused.value).startswith("iris:v1 cannot be restored: its copy in the trash is not a complete version (")
    assert not (home / "models" / "iris" / "v1").exists()


def test_restore_makes_the_name_directory_as_bentoml_does_and_empties_the_trash_run(home: Path, umask_zero: None) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    trashed(home, "iris", "v1", "run-a")
    (home / "models" / "iris" / "latest").unlink()
    (home / "models" / "iris").rmdir()  # as the deletion left it
    Trash(Store(home)).restore("model", "iris", "v1")
    assert stat.S_IMODE((home / "models" / "iris").stat().st_mode) == 0o755
    assert (home / "models" / "iris" / "latest").read_text() == "v1"
    assert list(trash_of(home).iterdir()) == []


def test_restore_of_a_version_newer_than_latest_points_latest_at_it(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=2))
    trashed(home, "iris", "v2", "run-a")
    (home / "models" / "iris" / "latest").write_text("v1")  # as the deletion's repair left it
    Trash(Store(home)).restore("model", "iris", "v2")
    assert (home / "models" / "iris" / "latest").read_text() == "v2"


def test_restore_of_a_version_as_old_as_latest_leaves_latest_alone(home: Path) -> None:
    created = NOW - timedelta(days=3)
    add_model(home, "iris", "v1", created)
    add_model(home, "iris", "v2", created, set_latest=False)
    (home / "models" / "iris" / "latest").write_text("v1")
    trashed(home, "iris", "v2", "run-a")
    Trash(Store(home)).restore("model", "iris", "v2")
    assert (home / "models" / "iris" / "latest").read_text() == "v1"


# --- recovery after an interrupted run ------------------------------------------------------------------------


def test_recover_leaves_a_latest_that_names_a_version_still_in_the_store(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=2))
    add_model(home, "iris", "v3", NOW - timedelta(days=1))
    trashed(home, "iris", "v3", "run-a")
    (home / "models" / "iris" / "latest").write_text("v1")  # someone pointed it at an older version
    assert Trash(Store(home)).recover() == []
    assert (home / "models" / "iris" / "latest").read_text() == "v1"


def test_recover_points_a_dangling_latest_at_the_newest_complete_version(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=2))
    add_model(home, "iris", "v3", NOW - timedelta(days=1))
    (home / "models" / "iris" / "v2" / "model.yaml").unlink()  # newer than v1, but not a complete version
    trashed(home, "iris", "v3", "run-a")
    assert Trash(Store(home)).recover() == ["model iris: latest pointed at a trashed version"]
    assert (home / "models" / "iris" / "latest").read_text() == "v1"


def test_recover_never_points_a_dangling_latest_at_a_dated_version_with_a_problem(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=1))
    add_model(home, "iris", "V3", NOW - timedelta(days=2), set_latest=False)  # dated, but not a valid tag
    trashed(home, "iris", "v2", "run-a")
    assert Trash(Store(home)).recover() == ["model iris: latest pointed at a trashed version"]
    assert (home / "models" / "iris" / "latest").read_text() == "v1"


def test_recover_with_no_complete_version_left_changes_nothing_and_says_nothing(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=2))
    (home / "models" / "iris" / "v1" / "model.yaml").unlink()
    trashed(home, "iris", "v2", "run-a")
    assert Trash(Store(home)).recover() == []
    assert (home / "models" / "iris" / "latest").read_text() == "v2"


def test_stuck_entries_are_reported_once_per_run_with_their_tag(home: Path, immutable: Callable[[Path], None]) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    copy = trashed(home, "iris", "v1", "run-a")
    immutable(copy / "weights-0.bin")
    reported: list[StuckEntry] = []
    trash = Trash(Store(home), report=reported.append)
    trash.purge(["run-a"])
    trash.purge(["run-a"])
    assert [(entry.kind, entry.name, entry.version) for entry in reported] == [("model", "iris", "v1")]
    assert reported[0].describe().startswith("trash entry model iris:v1 cannot be purged: ")


def test_a_stuck_entry_names_its_first_refusal_and_counts_the_others(home: Path, immutable: Callable[[Path], None]) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    copy = trashed(home, "iris", "v1", "run-a")
    pinned = sorted(path for path in copy.iterdir() if path.is_file())[:2]
    for path in pinned:
        immutable(path)
    trash = Trash(Store(home))
    trash.purge(["run-a"])
    (entry,) = trash.stuck
    assert entry.path == copy
    assert entry.error in {f"cannot remove {path}: Operation not permitted (and 1 more)" for path in pinned}


def test_recover_removes_a_name_directory_an_interrupted_run_emptied_and_says_so(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    trashed(home, "iris", "v1", "run-a")  # the run died before it removed models/iris
    assert Trash(Store(home)).recover() == ["model iris: removed the emptied name directory"]
    assert not (home / "models" / "iris").exists()


def test_recover_looks_at_the_store_trash_whatever_the_working_directory(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    trashed(home, "iris", "v1", "run-a")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert Trash(Store(home)).recover() == ["model iris: removed the emptied name directory"]


def test_recover_skips_a_trashed_name_gone_from_the_store_or_now_a_symlink_and_goes_on_with_the_rest(
    home: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "latest").write_text("v1")
    for index in range(5):
        add_model(home, f"gone{index}", "v1", NOW - timedelta(days=3))
        trashed(home, f"gone{index}", "v1", "run-a")
        (home / "models" / f"gone{index}" / "latest").unlink()
        (home / "models" / f"gone{index}").rmdir()  # someone else removed the emptied name directory already
        add_model(home, f"kept{index}", "v1", NOW - timedelta(days=3))
        trashed(home, f"kept{index}", "v1", "run-a")
    add_model(home, "linked", "v1", NOW - timedelta(days=3))
    trashed(home, "linked", "v1", "run-a")
    (home / "models" / "linked" / "latest").unlink()
    (home / "models" / "linked").rmdir()
    (home / "models" / "linked").symlink_to(outside, target_is_directory=True)
    assert sorted(Trash(Store(home)).recover()) == [
        f"model kept{index}: removed the emptied name directory" for index in range(5)
    ]
    assert (outside / "latest").read_text() == "v1"


def test_a_deleted_version_stays_in_the_trash_once_a_stop_is_requested(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    copy = trashed(home, "iris", "v1", "run-a")
    stop = threading.Event()
    stop.set()
    trash = Trash(Store(home), stop=stop)
    trash.finish(copy, "ci")
    assert trash.drain() == [] and copy.is_dir()  # the next run empties it
