"""The locked store (daemon/store.py) on a real BentoML home: the lock's message, latest repair, emptied names."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import pytest
from filelock import FileLock, Timeout
from structlog.testing import capture_logs

from daemon.errors import RunInterrupted, StoreBusyError
from daemon.layout import TRASHED_AT_FILE
from daemon.store import SkipAction, Store, remove_name_dir_if_emptied
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
        holder = json.loads(store.holder_path.read_text())
        busy = Store(home)._describe_holder()
    assert locked_at == run_at
    assert holder == {
        "pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv[:2]), "since": "2026-11-22T10:00:30+00:00",
    }
    assert busy == f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv[:2])}, since 2026-11-22T10:00:30+00:00)"
    assert store.locked_at is None
