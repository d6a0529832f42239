"""The locked store (daemon/store.py) on a real BentoML home: the lock's message, latest repair, emptied names."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import pytest
from filelock import FileLock, Timeout
from structlog.testing import capture_logs

from daemon.errors import ConfigError, RunInterrupted, StoreBusyError
from daemon.layout import TRASHED_AT_FILE
from daemon.store import SkipAction, Store, check_store_root, remove_name_dir_if_emptied
from tests.daemon.conftest import NOW
from tests.fakestore import add_model


def test_a_busy_store_whose_holder_note_is_unreadable_says_another_process_holds_it(home: Path) -> None:
    store = Store(home)
    with store.locked():
        store.holder_path.write_text("{torn")
        with pytest.raises(StoreBusyError) as busy, Store(home).locked(wait_seconds=0):
            pass
    assert str(busy.value) == f"store {home} is busy: locked by another process (holder unknown)"


def test_repair_latest_never_points_at_a_symlink_in_the_name_directory(home: Path, tmp_path: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=2))
    elsewhere = add_model(tmp_path / "other", "iris", "v9", NOW - timedelta(days=1))
    (home / "models" / "iris" / "v9").symlink_to(elsewhere, target_is_directory=True)
    store = Store(home)
    store.move_to_trash(home / "models" / "iris" / "v2", "run-a")
    assert store.repair_latest("model", "iris", "v2", maybe_emptied=False) == "v1"
    assert (home / "models" / "iris" / "latest").read_text() == "v1"


def test_a_name_directory_holding_something_that_is_not_a_file_stays_without_an_error(home: Path) -> None:
    name_dir = home / "models" / "iris"
    name_dir.mkdir(parents=True)
    (name_dir / "latest").write_text("v1")
    os.mkfifo(name_dir / "pipe")
    assert remove_name_dir_if_emptied(name_dir) is False
    assert name_dir.is_dir() and not (name_dir / "latest").exists()


@pytest.mark.parametrize(("name", "version"), [("iris", "../../../etc"), ("../..", "v1"), ("iris", "V1")])
def test_a_version_path_is_refused_unless_name_and_version_are_both_valid_tags(home: Path, name: str, version: str) -> None:
    with pytest.raises(SkipAction) as refused:
        Store(home).version_path("model", name, version)
    assert str(refused.value) == f"{name}:{version} is not a valid BentoML tag"


def test_repair_latest_never_points_at_a_version_with_a_problem(home: Path) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    add_model(home, "iris", "v2", NOW - timedelta(days=2))
    add_model(home, "iris", "V3", NOW - timedelta(days=1), set_latest=False)  # not a valid tag: never latest
    store = Store(home)
    store.move_to_trash(home / "models" / "iris" / "v2", "run-a")
    assert store.repair_latest("model", "iris", "v2", maybe_emptied=False) == "v1"


def test_a_trash_run_and_its_name_directories_are_private_to_the_owner(home: Path, umask_zero: None) -> None:
    add_model(home, "iris", "v1", NOW - timedelta(days=3))
    trashed = Store(home).move_to_trash(home / "models" / "iris" / "v1", "run-a")
    for directory in (trashed.parent, trashed.parents[2]):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_a_trash_run_made_under_the_lock_is_dated_by_the_run_instant_not_a_later_clock_reading(home: Path) -> None:
    run_at = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
    readings = iter([run_at, run_at + timedelta(minutes=5)])
    store = Store(home, clock=lambda: next(readings))
    with store.locked():
        run_dir = store.make_trash_run("run-a")
    assert (run_dir / TRASHED_AT_FILE).read_text() == "2026-11-22T10:00:00+00:00"


def test_a_stop_request_while_waiting_for_the_lock_ends_the_wait_as_an_interruption_at_the_lock(home: Path) -> None:
    stop = threading.Event()
    stop.set()
    with Store(home).locked(), pytest.raises(RunInterrupted) as stopped, Store(home).locked(wait_seconds=60, stop=stop):
        pass
    assert (str(stopped.value), stopped.value.phase) == ("stopped before the store was locked; nothing was done", "lock")


def test_waiting_for_a_busy_store_is_logged_once_naming_the_holder(home: Path) -> None:
    with Store(home).locked(), capture_logs() as logs, pytest.raises(StoreBusyError), Store(home).locked(wait_seconds=0.35):
        pass
    waiting = [entry for entry in logs if entry["event"] == "store.lock_waiting"]
    assert len(waiting) == 1
    assert waiting[0]["store"] == str(home) and waiting[0]["wait_seconds"] == 0.35
    assert waiting[0]["holder"].startswith(f"pid {os.getpid()} on {socket.gethostname()} (")


class HeldElsewhere:
    """A lock that another process always holds: every attempt times out; the timeouts asked for are kept."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def acquire(self, timeout: float) -> None:
        self.timeouts.append(timeout)
        raise Timeout("lock")


def test_with_no_wait_the_lock_is_tried_once_without_blocking(home: Path) -> None:
    lock = HeldElsewhere()
    with pytest.raises(StoreBusyError):
        Store(home)._acquire(cast("FileLock", lock), 0, None)
    assert lock.timeouts == [0.0]


def test_the_lock_holder_note_names_this_process_its_command_and_the_run_instant(home: Path) -> None:
    run_at = datetime(2026, 11, 22, 10, 0, 30, 999, tzinfo=timezone.utc)
    store = Store(home, clock=lambda: run_at)
    with store.locked() as locked_at:
        # Where an operator, and a retentiond of another release waiting for the lock, look for it.
        holder = json.loads((home / ".retentiond" / "lock.holder").read_text())
        busy = Store(home)._describe_holder()
    assert locked_at == run_at
    assert holder == {
        "pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv[:2]), "since": "2026-11-22T10:00:30+00:00",
    }
    assert busy == f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv[:2])}, since 2026-11-22T10:00:30+00:00)"
    assert store.locked_at is None


def test_the_holder_note_goes_with_the_lock_so_a_later_holder_is_never_named_after_an_ended_run(home: Path) -> None:
    with Store(home).locked():
        pass
    assert not (home / ".retentiond" / "lock.holder").exists()
    # Something else holds the lock now (another tool, a retentiond that has not written its note yet).
    with FileLock(str(home / ".retentiond" / "lock")), pytest.raises(StoreBusyError) as busy, Store(home).locked(wait_seconds=0):
        pass
    assert str(busy.value) == f"store {home} is busy: locked by another process (holder unknown)"


def test_a_note_left_by_a_run_that_was_killed_names_it_as_ended_not_as_the_holder(home: Path) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    note = {"pid": child.pid, "host": socket.gethostname(), "command": "retentiond apply", "since": "2026-11-22T10:00:30+00:00"}
    (home / ".retentiond").mkdir(exist_ok=True)
    (home / ".retentiond" / "lock.holder").write_text(json.dumps(note))
    described = Store(home)._describe_holder()
    assert described == (
        f"another process (holder unknown: the last note names pid {child.pid} on {socket.gethostname()} "
        "(retentiond apply, since 2026-11-22T10:00:30+00:00), which has ended)"
    )
    note.update(pid=1)  # a process that runs (of another user for a non-root test run: EPERM still means it runs)
    (home / ".retentiond" / "lock.holder").write_text(json.dumps(note))
    assert Store(home)._describe_holder().startswith("pid 1 on ")
    note.update(pid=child.pid, host="another-host")  # another machine's pids cannot be checked from here
    (home / ".retentiond" / "lock.holder").write_text(json.dumps(note))
    assert Store(home)._describe_holder().startswith(f"pid {child.pid} on another-host (")
    note.update(pid=2**80, host=socket.gethostname())
    (home / ".retentiond" / "lock.holder").write_text(json.dumps(note))
    assert Store(home)._describe_holder() == "another process (holder unknown)"


# --- the store root -------------------------------------------------------------------------------------------


def _refusal(home: Path) -> str:
    with pytest.raises(ConfigError) as refused:
        check_store_root(home)
    return str(refused.value)


def test_a_store_root_is_returned_resolved_when_it_is_a_bentoml_home_with_only_bentos(tmp_path: Path) -> None:
    (tmp_path / "store" / "bentos").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "store", target_is_directory=True)
    assert check_store_root(tmp_path / "link") == (tmp_path / "store").resolve()
    assert check_store_root(tmp_path / "store" / ".." / "store") == (tmp_path / "store").resolve()


def test_each_store_root_that_is_not_a_bentoml_home_is_refused_with_its_own_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    (tmp_path / "user" / "models").mkdir(parents=True)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "models").symlink_to(tmp_path / "user" / "models", target_is_directory=True)
    (tmp_path / "models-file").mkdir()
    (tmp_path / "models-file" / "models").write_text("")
    assert _refusal(tmp_path / "nowhere") == f"store.home {tmp_path / 'nowhere'} does not exist"
    assert _refusal(Path("/")) == "store.home / is /; refusing to treat it as a BentoML home"
    (tmp_path / "to-root").symlink_to("/")
    assert _refusal(tmp_path / "to-root") == "store.home / is /; refusing to treat it as a BentoML home"  # named resolved
    user = tmp_path / "user"
    assert _refusal(user) == f"store.home {user} is {user.resolve()}; refusing to treat it as a BentoML home"
    assert _refusal(tmp_path / "a-file") == f"store.home {tmp_path / 'a-file'} is not a directory"
    for plain in ("empty", "linked", "models-file"):
        assert _refusal(tmp_path / plain) == (
            f"store.home {tmp_path / plain} is not a BentoML home: it has no models/ or bentos/ directory"
        )


@pytest.mark.parametrize("linked", [".retentiond", ".retentiond/trash"])
def test_a_store_whose_lock_or_trash_directory_is_a_symlink_or_a_file_is_refused(home: Path, tmp_path: Path, linked: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "trash").mkdir(parents=True)
    if linked == ".retentiond/trash":
        (home / ".retentiond").mkdir()
    (home / linked).symlink_to(elsewhere if linked == ".retentiond" else elsewhere / "trash", target_is_directory=True)
    ours = home.resolve() / linked
    assert _refusal(home) == f"{ours} is a symlink or not a directory; refusing to lock or delete through it"
    (home / linked).unlink()
    (home / linked).write_text("")
    assert _refusal(home) == f"{ours} is a symlink or not a directory; refusing to lock or delete through it"
    (home / linked).unlink()
    (home / linked).mkdir()
    assert check_store_root(home) == home.resolve()


def test_a_store_root_that_cannot_be_looked_at_is_a_config_error_with_the_system_reason(tmp_path: Path) -> None:
    too_long = tmp_path / ("x" * 300)
    assert _refusal(too_long) == f"store.home {too_long}: cannot look at it: File name too long"


def test_a_store_root_in_a_symlink_loop_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert _refusal(tmp_path / "a").startswith(f"store.home {tmp_path / 'a'}")


def test_a_home_directory_in_a_symlink_loop_makes_the_store_root_a_config_error_with_the_reason(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    monkeypatch.setenv("HOME", str(tmp_path / "a"))  # the root is compared with $HOME, which cannot be resolved
    assert _refusal(home) == f"store.home {home}: cannot look at it: Symlink loop from '{tmp_path / 'a'}'"


def test_the_lock_wait_gives_up_as_soon_as_the_clock_reaches_the_deadline(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock that does not move between readings (coarse clocks do): the deadline is reached, not passed.
    class Counted(HeldElsewhere):
        def acquire(self, timeout: float) -> None:
            assert len(self.timeouts) < 3, "still trying after the deadline"
            super().acquire(timeout)

    monkeypatch.setattr(time, "monotonic", lambda: 1000.0)
    lock = Counted()
    with pytest.raises(StoreBusyError):
        Store(home)._acquire(cast("FileLock", lock), 0, None)
    assert lock.timeouts == [0.0]
