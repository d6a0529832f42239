"""Opt-in safety: the undo window (trash_retention + restore), the shrink guard, blast-radius exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.audit import read_records
from daemon.cli import main
from daemon.errors import EXIT_ACTIONS_FAILED, EXIT_CONFIG, EXIT_OK
from tests.daemon.conftest import NOW
from tests.fakestore import add_model

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


def with_store_keys(config: Path, keys: str) -> Path:
    config.write_text(config.read_text().replace("[daemon]\n", f"{keys}\n[daemon]\n", 1))
    return config


def versions(home: Path) -> set[str]:
    return {p.name for p in (home / "models" / "iris").iterdir() if p.is_dir()}


def test_without_retention_nothing_is_left_in_the_trash(
    home: Path, five_versions: list[str], write_config: Callable[..., Path]
) -> None:
    assert main(["apply", "--config", str(write_config())]) == EXIT_OK
    assert list((home / ".retentiond" / "trash").iterdir()) == []


def test_trash_retention_keeps_deleted_versions_restorable(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = with_store_keys(write_config(), 'trash_retention = "7d"')
    original = (home / "models" / "iris" / "v3" / "model.yaml").read_bytes()
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    assert versions(home) == {"v0", "v1"}
    capsys.readouterr()
    assert main(["status", "--config", str(config), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["trash"]["versions"] == 3

    assert main(["restore", "iris:v3", "--config", str(config)]) == EXIT_OK
    assert "restored model iris:v3" in capsys.readouterr().out
    assert versions(home) == {"v0", "v1", "v3"}
    assert (home / "models" / "iris" / "v3" / "model.yaml").read_bytes() == original
    assert (home / "models" / "iris" / "latest").read_text() == "v0"  # v3 is older: latest stays
    events = [r["event"] for r in read_records(tmp_path / "log" / "audit.jsonl")]
    assert events[-3:] == ["artifact.restore_intended", "artifact.restored", "run.finished"]

    assert main(["restore", "iris:v3", "--config", str(config)]) == EXIT_ACTIONS_FAILED
    assert "not in the trash" in capsys.readouterr().err


@pytest.mark.parametrize(("store_keys", "disk_policy", "freed", "held"), [
    ('trash_retention = "7d"', False, "0 B freed.", "3 deleted version(s), 48.0 KiB on disk, stay in the trash for 7d"),
    ("", False, "48.0 KiB freed.", None),  # no undo window: the space is freed now
    ('trash_retention = "7d"', True, "64.0 KiB freed.", None),  # a disk policy's evictions are purged in the window too
])
def test_apply_says_when_the_space_it_reports_stays_in_the_trash_for_the_undo_window(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str],
    store_keys: str, disk_policy: bool, freed: str, held: str | None,
) -> None:
    policy = '[[disk]]\nname = "d"\nmax_store_size = "1KiB"\nmin_age = "0s"\n' if disk_policy else None
    config = with_store_keys(write_config(policy) if policy else write_config(), store_keys)
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    last = " ".join(capsys.readouterr().out.split()[-40:])
    assert f"0 skipped; {freed}" in last
    if held is None:
        assert "stay in the trash" not in last
    else:
        assert f"{held} (store.trash_retention), freed when it is purged; `retentiond restore NAME:VERSION` takes one back." in last


def test_restoring_over_an_existing_version_is_refused(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = with_store_keys(write_config(), 'trash_retention = "7d"')
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    add_model(home, "iris", "v4", NOW - timedelta(days=5), set_latest=False)  # someone saved it again
    assert main(["restore", "iris:v4", "--config", str(config)]) == EXIT_ACTIONS_FAILED
    assert "refusing to restore over it" in capsys.readouterr().err


def test_restoring_the_newest_version_moves_latest_back_to_it(
    home: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for day in range(3):
        add_model(home, "old", f"v{day}", NOW - timedelta(days=40 + day))
    (home / "models" / "old" / "latest").unlink()
    config = with_store_keys(
        write_config('[[retention]]\nname = "ci"\nkeep_newer_than = "7d"\nallow_remove_all = true\n'), 'trash_retention = "1d"'
    )
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    assert not (home / "models" / "old").exists()
    assert main(["restore", "old:v0", "--config", str(config)]) == EXIT_OK
    assert (home / "models" / "old" / "latest").read_text() == "v0"
    assert main(["restore", "old:v1", "--config", str(config)]) == EXIT_OK
    assert (home / "models" / "old" / "latest").read_text() == "v0"


def test_trash_older_than_the_retention_is_purged_at_the_next_run(
    home: Path, five_versions: list[str], write_config: Callable[..., Path]
) -> None:
    config = with_store_keys(write_config(), 'trash_retention = "1h"')
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    (run_dir,) = list((home / ".retentiond" / "trash").iterdir())
    (run_dir / "trashed_at").write_text((datetime.now(timezone.utc) - timedelta(hours=2)).isoformat())
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    assert not run_dir.exists()


def test_disk_pressure_purges_the_trash_first(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = with_store_keys(write_config(), 'trash_retention = "30d"')
    assert main(["apply", "--config", str(config), "--policy", "ci"]) == EXIT_OK
    assert any((home / ".retentiond" / "trash").iterdir())
    config.write_text(config.read_text() + '[[disk]]\nname = "pressure"\nhigh_watermark = "1%"\n')
    assert main(["apply", "--config", str(config), "--policy", "pressure"]) == EXIT_OK
    assert list((home / ".retentiond" / "trash").iterdir()) == []
    assert "trash.purged" in [r["event"] for r in read_records(tmp_path / "log" / "audit.jsonl")]
    assert versions(home) == {"v0"}  # evicted under pressure; the floor and latest still hold


def test_a_store_that_suddenly_shrank_is_not_touched(
    home: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for day in range(20):
        add_model(home, "iris", f"v{day:02d}", NOW - timedelta(days=day + 1))
    config = with_store_keys(write_config('[[retention]]\nname = "ci"\nkeep_last = 15\n'), 'max_shrink = "50%"')
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    for day in range(3, 15):  # an unmounted volume, a half-synced copy...
        shutil.rmtree(home / "models" / "iris" / f"v{day:02d}")
    before = versions(home)
    capsys.readouterr()
    assert main(["apply", "--config", str(config)]) == EXIT_ACTIONS_FAILED
    assert "has 3 versions, the last run saw 15" in capsys.readouterr().err
    assert versions(home) == before
    assert main(["apply", "--config", str(config), "--accept-shrink"]) == EXIT_OK


def test_blast_radius_refusal_makes_apply_exit_1_and_deletes_nothing(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config('[[retention]]\nname = "ci"\nkeep_last = 1\nmax_delete_per_run = 2\n')
    assert main(["apply", "--config", str(config), "--json"]) == EXIT_ACTIONS_FAILED
    result = json.loads(capsys.readouterr().out)
    assert result["actions"] == [] and any("exceed max_delete_per_run 2" in w for w in result["warnings"])
    assert versions(home) == set(five_versions)
    assert os.environ.get("RETENTIOND_CONFIG") is None


# ---------------------------------------------------------------- max_shrink needs the state it compares with


@pytest.fixture
def world_readable_root() -> Iterator[Path]:
    """A directory outside pytest's root-only tmp tree, so that an unprivileged user can reach what is in it."""
    root = Path(tempfile.mkdtemp(prefix="retentiond-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


def test_max_shrink_with_a_state_dir_this_user_cannot_write_exits_78_before_deleting(
    world_readable_root: Path, five_versions: list[str], home: Path
) -> None:
    # The timer unit's user cannot write the state dir root made: without state.json max_shrink would be off.
    store = world_readable_root / "bentoml"
    shutil.copytree(home, store, symlinks=True)
    (world_readable_root / "state").mkdir(mode=0o755)
    (world_readable_root / "log").mkdir()
    config = world_readable_root / "config.toml"
    config.write_text(
        f'[store]\nhome = "{store}"\nmax_shrink = "50%"\n[daemon]\nstate_dir = "{world_readable_root / "state"}"\n'
        f'audit_log = "{world_readable_root / "log" / "audit.jsonl"}"\n[[retention]]\nname = "ci"\nkeep_last = 2\n'
    )
    for path in (store, world_readable_root / "log"):
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(path)], check=True)
    apply = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, "-m", "daemon", "apply", "--config", str(config)],
        capture_output=True, text=True, cwd=world_readable_root, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "BENTOML_DO_NOT_TRACK": "True"},
    )
    assert apply.returncode == EXIT_CONFIG, apply.stderr
    assert f"daemon.state_dir {world_readable_root / 'state'} cannot be written" in apply.stderr
    assert "Traceback" not in apply.stderr
    assert versions(store) == set(five_versions)
    assert not (world_readable_root / "log" / "audit.jsonl").exists()


def test_max_shrink_with_a_state_dir_that_cannot_be_created_exits_78(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "state").write_text("a file where the state directory should be")
    config = with_store_keys(write_config(), 'max_shrink = "50%"')
    assert main(["apply", "--config", str(config)]) == EXIT_CONFIG
    assert f"daemon.state_dir {tmp_path / 'state'} cannot be written" in capsys.readouterr().err
    assert versions(home) == set(five_versions)


def test_max_shrink_with_an_unreadable_state_file_refuses_the_run(
    home: Path, write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for day in range(20):
        add_model(home, "iris", f"v{day:02d}", NOW - timedelta(days=day + 1))
    config = with_store_keys(write_config('[[retention]]\nname = "ci"\nkeep_last = 15\n'), 'max_shrink = "50%"')
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_text('{"store": {"home": "')  # torn by hand or by a full disk
    before = versions(home)
    assert main(["apply", "--config", str(config)]) == EXIT_ACTIONS_FAILED
    assert "store.max_shrink compares with. Nothing is deleted" in capsys.readouterr().err
    assert versions(home) == before
    assert main(["apply", "--config", str(config), "--accept-shrink"]) == EXIT_OK
    assert len(versions(home)) == 15


def test_without_max_shrink_an_unwritable_state_dir_only_loses_history(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The contract: state.json is history for `status` unless a safety limit reads it, so the run goes on.
    (tmp_path / "state").write_text("a file where the state directory should be")
    assert main(["apply", "--config", str(write_config())]) == EXIT_OK
    assert "state.write_failed" in capsys.readouterr().err
    assert versions(home) == {"v0", "v1"}
