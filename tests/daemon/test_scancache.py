"""The scan cache must never make a changed or replaced version look unchanged, and never stop a scan."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon import inventory
from daemon.cli import main
from daemon.inventory import scan_store
from daemon.scancache import SETTLE_SECONDS, ScanCache, cache_path
from policies.model import Inventory
from tests.fakestore import add_bento, add_model, make_home, model_yaml

OLD = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=3)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every version directory the scanner walks and reads (cache misses), in order."""
    seen: list[str] = []
    real_measure = inventory._measure

    def counting_measure(path: str, *arguments: object) -> object:
        seen.append(path)
        return real_measure(path, *arguments)  # type: ignore[arg-type]

    monkeypatch.setattr(inventory, "_measure", counting_measure)
    return seen


def by_tag(home: Path, state_dir: Path | None) -> dict[str, object]:
    return {artifact.tag: artifact for artifact in scan_store(home, state_dir).artifacts}


def without_read_times(scanned: Inventory) -> Inventory:
    return dataclasses.replace(
        scanned, artifacts=tuple(dataclasses.replace(artifact, last_read_at=None) for artifact in scanned.artifacts)
    )


def let_timestamps_tick() -> None:
    # File timestamps come from a coarse clock (a few ms): make the next change visibly later.
    time.sleep(0.05)


def test_second_scan_reads_nothing_again_and_gives_the_same_inventory(home: Path, state_dir: Path, reads: list[str]) -> None:
    for index in range(5):
        add_model(home, "iris", f"v{index}", OLD - timedelta(days=index), labels={"stage": "prod", "n": "123"})
    add_bento(home, "svc", "b1", OLD, ["iris:v1"])
    (home / "models" / "iris" / "broken").mkdir()
    os.utime(home / "models" / "iris" / "broken", (OLD.timestamp(), OLD.timestamp()))
    uncached = scan_store(home)
    first = scan_store(home, state_dir)
    assert len(reads) == 7 + 7
    second = scan_store(home, state_dir)
    assert len(reads) == 14, "a settled, unchanged version is never read twice"
    # Files' access times are never cached (a read moves them unseen): a cached version's is unknown.
    assert all(artifact.last_read_at is None for artifact in second.artifacts)
    assert without_read_times(first) == second == without_read_times(uncached)
    assert first == uncached


def test_replaced_version_directory_is_read_again(home: Path, state_dir: Path) -> None:
    add_model(home, "iris", "v1", OLD, labels={"stage": "dev"})
    assert by_tag(home, state_dir)["iris:v1"].labels == {"stage": "dev"}  # type: ignore[attr-defined]
    shutil.rmtree(home / "models" / "iris" / "v1")
    add_model(home, "iris", "v1", OLD - timedelta(hours=1), labels={"stage": "pro"})  # same name, same sizes
    replaced = by_tag(home, state_dir)["iris:v1"]
    assert replaced.labels == {"stage": "pro"}  # type: ignore[attr-defined]
    assert replaced.created_at == OLD - timedelta(hours=1)  # type: ignore[attr-defined]


def test_model_yaml_rewritten_in_place_with_its_mtime_put_back_is_detected(home: Path, state_dir: Path) -> None:
    version_dir = add_model(home, "iris", "v1", OLD, labels={"stage": "dev"})
    assert by_tag(home, state_dir)["iris:v1"].labels == {"stage": "dev"}  # type: ignore[attr-defined]
    let_timestamps_tick()
    metadata = version_dir / "model.yaml"
    before = metadata.stat()
    with metadata.open("r+") as handle:  # same inode, same size, old mtime: only ctime tells
        handle.write(model_yaml("iris", "v1", OLD, {"stage": "pro"}))
    os.utime(metadata, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert metadata.stat().st_size == before.st_size and metadata.stat().st_ino == before.st_ino
    assert by_tag(home, state_dir)["iris:v1"].labels == {"stage": "pro"}  # type: ignore[attr-defined]


def test_model_yaml_rewritten_in_place_is_read_again(home: Path, state_dir: Path) -> None:
    version_dir = add_model(home, "iris", "v1", OLD)
    scan_store(home, state_dir)
    (version_dir / "model.yaml").write_text(model_yaml("iris", "v1", OLD - timedelta(days=1), {"retention": "keep"}))
    artifact = by_tag(home, state_dir)["iris:v1"]
    assert artifact.labels == {"retention": "keep"}  # type: ignore[attr-defined]
    assert artifact.created_at == OLD - timedelta(days=1)  # type: ignore[attr-defined]


def test_a_file_added_to_a_version_changes_its_size(home: Path, state_dir: Path) -> None:
    version_dir = add_model(home, "iris", "v1", OLD)
    size = by_tag(home, state_dir)["iris:v1"].size_bytes  # type: ignore[attr-defined]
    let_timestamps_tick()
    (version_dir / "late.bin").write_bytes(b"x" * 1000)
    os.utime(version_dir / "late.bin", (OLD.timestamp(), OLD.timestamp()))
    os.utime(version_dir, (OLD.timestamp(), OLD.timestamp()))
    assert by_tag(home, state_dir)["iris:v1"].size_bytes == size + 1000  # type: ignore[attr-defined]


def test_recently_written_versions_are_walked_every_time(home: Path, state_dir: Path, reads: list[str]) -> None:
    add_model(home, "iris", "old", OLD)
    fresh = add_model(home, "iris", "fresh", datetime.now(timezone.utc), age_directory=False)
    scan_store(home, state_dir)
    (fresh / "sub").mkdir()
    (fresh / "sub" / "weights.bin").write_bytes(b"w" * 5000)  # a save still copying files into a sub-directory
    scan_store(home, state_dir)
    assert [Path(path).name for path in reads] == ["fresh", "old", "fresh"]
    assert by_tag(home, state_dir)["iris:fresh"].size_bytes > 5000  # type: ignore[attr-defined]


def test_deleted_and_added_versions_are_seen(home: Path, state_dir: Path) -> None:
    for index in range(3):
        add_model(home, "iris", f"v{index}", OLD - timedelta(days=index))
    scan_store(home, state_dir)
    shutil.rmtree(home / "models" / "iris" / "v1")
    add_model(home, "iris", "v9", OLD - timedelta(days=9))
    assert set(by_tag(home, state_dir)) == {"iris:v0", "iris:v2", "iris:v9"}


def test_an_unwritable_state_dir_is_logged_once_and_the_scan_goes_on(home: Path, tmp_path: Path) -> None:
    add_model(home, "iris", "v1", OLD)
    not_a_directory = tmp_path / "state-file"
    not_a_directory.write_text("in the way")
    with capture_logs() as logs:
        assert set(by_tag(home, not_a_directory)) == {"iris:v1"}
        add_model(home, "iris", "v2", OLD - timedelta(days=1))
        assert set(by_tag(home, not_a_directory)) == {"iris:v1", "iris:v2"}
    assert [entry["event"] for entry in logs] == ["scan_cache.write_failed"]


@pytest.mark.parametrize("damage", [b"", b"garbage\n", b"0" * 32 + b"\n{}\n", None])
def test_a_damaged_cache_file_is_ignored_and_rewritten(home: Path, state_dir: Path, damage: bytes | None) -> None:
    add_model(home, "iris", "v1", OLD, labels={"stage": "dev"})
    expected = scan_store(home)
    scan_store(home, state_dir)
    path = cache_path(state_dir, home)
    content = path.read_bytes()
    path.write_bytes(content[:-7] if damage is None else damage)  # None: a torn write
    with capture_logs():
        assert scan_store(home, state_dir) == expected
    assert ScanCache.load(state_dir, home).remembered("models/iris").keys() == {"v1"}


def test_a_cache_written_for_another_store_is_not_used(home: Path, state_dir: Path, tmp_path: Path) -> None:
    add_model(home, "iris", "v1", OLD, labels={"stage": "dev"})
    scan_store(home, state_dir)
    other = make_home(tmp_path / "other")
    add_model(other, "iris", "v1", OLD, labels={"stage": "other"})
    shutil.copy(cache_path(state_dir, home), cache_path(state_dir, other))
    assert by_tag(other, state_dir)["iris:v1"].labels == {"stage": "other"}  # type: ignore[attr-defined]


def test_problems_labels_and_references_survive_the_cache(home: Path, state_dir: Path) -> None:
    add_model(home, "iris", "v1", OLD, labels={"retention": "keep", "flag": "yes"})
    add_bento(home, "svc", "b1", OLD, ["iris:v1", "iris:v2"])
    broken = home / "models" / "iris" / "nolabels"
    broken.mkdir()
    (broken / "model.yaml").write_text("name: iris\nversion: nolabels\ncreation_time: '2026-01-01T00:00:00+00:00'\n")
    for path in (broken / "model.yaml", broken):
        os.utime(path, (OLD.timestamp(), OLD.timestamp()))
    first = scan_store(home, state_dir)
    second = scan_store(home, state_dir)
    assert without_read_times(first) == second
    assert ScanCache.load(state_dir, home).remembered("models/iris").keys() == {"v1", "nolabels"}
    assert second.referencing_bentos() == {"iris:v1": ["svc:b1"], "iris:v2": ["svc:b1"]}


def test_settle_time_keeps_fresh_versions_out_of_the_file(home: Path, state_dir: Path) -> None:
    add_model(home, "iris", "old", OLD)
    add_model(home, "iris", "new", datetime.now(timezone.utc) - timedelta(seconds=SETTLE_SECONDS / 2))
    scan_store(home, state_dir)
    assert ScanCache.load(state_dir, home).remembered("models/iris").keys() == {"old"}


def test_plan_and_apply_keep_the_cache_in_the_state_dir(
    home: Path, state_dir: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for index in range(4):
        add_model(home, "iris", f"v{index}", OLD - timedelta(days=index))
    config = write_config()
    assert main(["plan", "--config", str(config), "--json"]) == 0
    assert ScanCache.load(state_dir, home).remembered("models/iris").keys() == {"v0", "v1", "v2", "v3"}
    assert main(["apply", "--config", str(config), "--json"]) == 0
    assert sorted(path.name for path in (home / "models" / "iris").iterdir() if path.is_dir()) == ["v0", "v1"]
    assert main(["plan", "--config", str(config), "--json"]) == 0
    assert ScanCache.load(state_dir, home).remembered("models/iris").keys() == {"v0", "v1"}


def bento_with_unknown_references(home: Path) -> Path:
    """A bento whose bento.yaml parses but names a model list that is not a list: a cacheable "unknown"."""
    bento = add_bento(home, "svc", "b1", OLD, ["iris:v1"])
    text = (bento / "bento.yaml").read_text().replace("models: []", "models: iris:v1")
    (bento / "bento.yaml").write_text(text)
    for path in (bento / "bento.yaml", bento):
        os.utime(path, (OLD.timestamp(), OLD.timestamp()))
    return bento


def test_unknown_bento_references_stay_unknown_when_answered_from_the_cache(home: Path, state_dir: Path, reads: list[str]) -> None:
    add_model(home, "iris", "v1", OLD)
    bento = bento_with_unknown_references(home)
    first = scan_store(home, state_dir)
    second = scan_store(home, state_dir)
    assert len(reads) == 2, "the second scan answered from the cache"
    assert [entry.subject for entry in second.bento_references().unknown] == ["bento svc:b1"]
    assert second == first
    # Repaired in place, with the old size and mtime put back: the cache must not keep calling it unknown.
    text = (bento / "bento.yaml").read_text()
    (bento / "bento.yaml").write_text(text.replace("models: iris:v1", "models: [   ]  "))
    os.utime(bento / "bento.yaml", (OLD.timestamp(), OLD.timestamp()))
    assert (bento / "bento.yaml").stat().st_size == len(text)
    repaired = scan_store(home, state_dir)
    assert repaired.bento_references().unknown == ()
    assert repaired.referencing_bentos() == {"iris:v1": ["svc:b1"]}


def test_a_cache_file_from_before_unknown_references_were_remembered_is_not_used(home: Path, state_dir: Path) -> None:
    import hashlib
    import json

    bento_with_unknown_references(home)
    scan_store(home, state_dir)
    # Rewrite the file as format 2 wrote it: no reason, and no extras at all for a bento without labels,
    # references or problem. Read back, such a record would say "known, references none".
    path = cache_path(state_dir, home)
    content = path.read_bytes().partition(b"\n")[2]
    header_line, _, records = content.partition(b"\n")
    header = json.loads(header_line)
    header.update(format=2, extras={})
    content = json.dumps(header, separators=(",", ":")).encode() + b"\n" + records
    path.write_bytes(hashlib.blake2b(content, digest_size=16).hexdigest().encode() + b"\n" + content)
    assert [entry.subject for entry in scan_store(home, state_dir).bento_references().unknown] == ["bento svc:b1"]


def test_the_cache_file_is_readable_by_its_owner_only_and_leaves_no_temp_file(home: Path, state_dir: Path) -> None:
    # It holds every version's labels: a store's other users read the store, not retentiond's state.
    add_model(home, "iris", "v1", OLD, labels={"owner": "team-a"})
    old_umask = os.umask(0)  # whatever the umask, the mode is the file's own
    try:
        scan_store(home, state_dir)
    finally:
        os.umask(old_umask)
    path = cache_path(state_dir, home)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
