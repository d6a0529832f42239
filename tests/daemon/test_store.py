"""The locked store (daemon/store.py) on a real BentoML home: the lock's message, latest repair, emptied names."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.errors import StoreBusyError
from daemon.store import Store, remove_name_dir_if_emptied
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
