"""The locked store (daemon/store.py) on a real BentoML home: the lock's message, latest repair, emptied names."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.errors import StoreBusyError
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
