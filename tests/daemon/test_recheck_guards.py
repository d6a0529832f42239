"""Every re-check ``Store.recheck`` makes under the lock, each against the race it exists for.

Another tool (BentoML takes no lock) changes a planned version after the plan was made and
before the deletion: right before the re-check of that version, under the lock. The deletion
must be skipped with the reason of exactly that guard, the version must still be where it was,
and the audit log must record the skip. Each test fails when its guard is removed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.audit import read_records
from daemon.cli import main
from daemon.errors import EXIT_OK
from daemon.store import Store
from policies.model import Artifact
from tests.daemon.conftest import NOW
from tests.fakestore import model_yaml

# five_versions: iris v0 (newest, latest) .. v4; keep_last = 2 plans v2, v3, v4 for deletion.
RACED = "v3"


def race_before_recheck(monkeypatch: pytest.MonkeyPatch, version: str, interfere: Callable[[Path], None]) -> None:
    """Make ``interfere(store_home)`` run once, under the lock, right before ``version`` is re-checked."""
    real_recheck = Store.recheck
    raced: list[str] = []

    def recheck_after_a_race(store: Store, artifact: Artifact) -> Path:
        if artifact.version == version and not raced:
            raced.append(version)
            interfere(store.home)
        return real_recheck(store, artifact)

    monkeypatch.setattr(Store, "recheck", recheck_after_a_race)


def apply_json(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[str, str | None]]:
    """Run ``apply --json``; return each version's (outcome, error)."""
    assert main(["apply", "--config", str(config), "--json"]) == EXIT_OK
    return {action["version"]: (action["outcome"], action["error"]) for action in json.loads(capsys.readouterr().out)["actions"]}


def skipped_in_audit(tmp_path: Path) -> dict[str, str]:
    return {
        record["version"]: record["error"]
        for record in read_records(tmp_path / "log" / "audit.jsonl")
        if record["event"] == "artifact.delete_skipped"
    }


def assert_only_the_raced_version_was_skipped(
    outcomes: dict[str, tuple[str, str | None]], reason: str, tmp_path: Path
) -> None:
    assert outcomes == {"v2": ("ok", None), RACED: ("skipped", reason), "v4": ("ok", None)}
    assert skipped_in_audit(tmp_path) == {RACED: reason}


def version_dirs(home: Path) -> set[str]:
    return {entry.name for entry in (home / "models" / "iris").iterdir() if entry.is_dir()}


def test_a_version_that_became_latest_after_the_plan_is_not_deleted(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def someone_points_latest_at_it(store_home: Path) -> None:
        (store_home / "models" / "iris" / "latest").write_text(RACED)

    race_before_recheck(monkeypatch, RACED, someone_points_latest_at_it)
    outcomes = apply_json(write_config(), capsys)
    assert_only_the_raced_version_was_skipped(outcomes, "it became the latest version", tmp_path)
    assert version_dirs(home) == {"v0", "v1", RACED}
    assert (home / "models" / "iris" / "latest").read_text() == RACED


# five_versions made v3 at NOW - 4 days.
RACED_CREATED_AT = NOW - timedelta(days=4)


@pytest.mark.parametrize(
    "rewritten",
    [
        pytest.param(model_yaml("iris", RACED, RACED_CREATED_AT + timedelta(seconds=1)), id="creation-time-a-second-later"),
        pytest.param(model_yaml("iris", RACED, RACED_CREATED_AT - timedelta(days=400)), id="creation-time-older"),
        pytest.param("creation_time: [unfinished", id="half-written"),
        # A keep label set by hand after the plan: the version must not go (labels are what keep_labels pins).
        pytest.param(model_yaml("iris", RACED, RACED_CREATED_AT, {"retention": "keep"}), id="keep-label-added"),
    ],
)
def test_a_version_whose_metadata_was_rewritten_after_the_plan_is_not_deleted(
    rewritten: str, home: Path, five_versions: list[str], write_config: Callable[..., Path],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    version_dir = home / "models" / "iris" / RACED

    def a_save_rewrites_model_yaml_in_place(store_home: Path) -> None:
        # In place (same inode, directory mtime untouched): only the metadata re-check can see it.
        (store_home / "models" / "iris" / RACED / "model.yaml").write_text(rewritten)

    race_before_recheck(monkeypatch, RACED, a_save_rewrites_model_yaml_in_place)
    directory_mtime = os.lstat(version_dir).st_mtime_ns
    outcomes = apply_json(write_config(), capsys)
    assert os.lstat(version_dir).st_mtime_ns == directory_mtime  # the identity re-check could not have seen it
    assert_only_the_raced_version_was_skipped(outcomes, "its metadata changed since it was planned", tmp_path)
    assert version_dirs(home) == {"v0", "v1", RACED}


def test_a_version_someone_else_deleted_after_the_plan_is_skipped_as_gone(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def bentoml_deletes_it(store_home: Path) -> None:
        shutil.rmtree(store_home / "models" / "iris" / RACED)

    race_before_recheck(monkeypatch, RACED, bentoml_deletes_it)
    outcomes = apply_json(write_config(), capsys)
    reason = f"{home.resolve() / 'models' / 'iris' / RACED} is gone (someone else deleted it)"
    assert_only_the_raced_version_was_skipped(outcomes, reason, tmp_path)
    assert version_dirs(home) == {"v0", "v1"}


@pytest.mark.parametrize("level", ["models", "models/iris", f"models/iris/{RACED}"])
def test_a_directory_on_the_way_replaced_by_a_symlink_after_the_plan_is_never_followed(
    level: str, home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # The very same directories, moved out of the store and linked back: without the plain-directory
    # re-check, identity, latest and metadata all still match and the rename would act outside the store.
    outside = tmp_path / "outside"
    moved = outside / level

    def someone_moves_it_out_and_links_it_back(store_home: Path) -> None:
        moved.parent.mkdir(parents=True)
        os.rename(store_home / level, moved)
        os.symlink(moved, store_home / level)

    race_before_recheck(monkeypatch, RACED, someone_moves_it_out_and_links_it_back)
    outcomes = apply_json(write_config(), capsys)
    assert outcomes[RACED] == ("skipped", f"{home.resolve() / level} is no longer a plain directory")
    assert skipped_in_audit(tmp_path)[RACED] == outcomes[RACED][1]
    # Wherever the move happened, the raced version now lives here, untouched.
    assert (outside / "models" / "iris" / RACED / "model.yaml").is_file()


def _same_content_new_directory(store_home: Path) -> None:
    # Deleted and saved again under the same tag with the same files and times: only the inode differs.
    version_dir = store_home / "models" / "iris" / RACED
    copy = version_dir.with_name(f"{RACED}.copy")
    before = os.lstat(version_dir)
    shutil.copytree(version_dir, copy, copy_function=shutil.copy2)  # copystat: the same mtime, to the nanosecond
    shutil.rmtree(version_dir)
    os.rename(copy, version_dir)
    after = os.lstat(version_dir)
    assert after.st_mtime_ns == before.st_mtime_ns and after.st_ino != before.st_ino


def _a_save_still_writing(store_home: Path) -> None:
    (store_home / "models" / "iris" / RACED / "weights-2.bin").write_bytes(b"still being copied in")


@pytest.mark.parametrize("interfere", [_same_content_new_directory, _a_save_still_writing], ids=["new-inode", "new-file"])
def test_a_version_directory_that_changed_after_the_plan_is_not_deleted(
    interfere: Callable[[Path], None], home: Path, five_versions: list[str], write_config: Callable[..., Path],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    race_before_recheck(monkeypatch, RACED, interfere)
    outcomes = apply_json(write_config(), capsys)
    assert_only_the_raced_version_was_skipped(outcomes, "the version directory changed since it was planned", tmp_path)
    assert version_dirs(home) == {"v0", "v1", RACED}
