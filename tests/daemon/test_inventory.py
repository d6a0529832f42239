from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.inventory import scan_store
from tests.fakestore import add_bento, add_model, make_home

NOW = datetime(2026, 11, 22, 10, tzinfo=timezone.utc)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


def by_tag(home: Path) -> dict[str, object]:
    return {artifact.tag: artifact for artifact in scan_store(home).artifacts}


def test_scan_reads_every_field_of_a_version(home: Path) -> None:
    add_model(home, "iris", "aaaa", NOW - timedelta(days=2), labels={"stage": "prod"}, files=3, file_bytes=1000)
    add_model(home, "iris", "bbbb", NOW - timedelta(days=1))
    inventory = scan_store(home)
    older = next(a for a in inventory.artifacts if a.version == "aaaa")
    newer = next(a for a in inventory.artifacts if a.version == "bbbb")
    yaml_size = (home / "models/iris/aaaa/model.yaml").stat().st_size
    assert older.kind == "model" and older.name == "iris"
    assert older.created_at == NOW - timedelta(days=2)
    assert older.labels == {"stage": "prod"}
    assert older.size_bytes == 3000 + yaml_size
    assert older.modified_at == NOW - timedelta(days=2)
    assert not older.is_latest and newer.is_latest
    assert older.problem is None and inventory.warnings == ()


def test_size_counts_files_in_subdirectories_but_not_symlink_targets(home: Path, tmp_path: Path) -> None:
    version_dir = add_model(home, "iris", "aaaa", NOW)
    (version_dir / "sub").mkdir()
    (version_dir / "sub" / "big.bin").write_bytes(b"x" * 5000)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"y" * 99999)
    (version_dir / "link.bin").symlink_to(outside)
    artifact = scan_store(home).artifacts[0]
    assert 5000 < artifact.size_bytes < 99999


def test_bento_model_references_are_collected_from_services_and_top_level(home: Path) -> None:
    add_model(home, "iris", "aaaa", NOW)
    add_bento(home, "svc", "b1", NOW, ["iris:aaaa"])
    old_style = home / "bentos" / "old" / "b0"
    old_style.mkdir(parents=True)
    (old_style / "bento.yaml").write_text(
        "name: old\nversion: b0\nlabels: {}\ncreation_time: '2026-01-01T00:00:00+00:00'\n"
        "models:\n- tag: iris:cccc\n  module: x\n- tag: 'iris:dddd'\n"
    )
    inventory = scan_store(home)
    assert inventory.referencing_bentos() == {"iris:aaaa": ["svc:b1"], "iris:cccc": ["old:b0"], "iris:dddd": ["old:b0"]}
    assert inventory.bento_references().unknown == ()


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        (None, "no model.yaml"),
        ("", "empty or not a mapping"),
        ("name: [unclosed\n", "malformed model.yaml"),
        ("name: iris\nversion: vvvv\nlabels: {}\n", "no creation_time"),
        ("name: iris\nversion: vvvv\nlabels: {}\ncreation_time: '2026-01-01T00:00:00'\n", "without timezone"),
        ("name: iris\nversion: vvvv\ncreation_time: '2026-01-01T00:00:00+00:00'\n", "no labels"),
        ("name: other\nversion: vvvv\nlabels: {}\ncreation_time: '2026-01-01T00:00:00+00:00'\n", "not its directory"),
        ("name: iris\nversion: vvvv\nlabels: {}\ncreation_time: 'yesterday'\n", "unreadable creation_time"),
    ],
)
def test_incomplete_entries_are_reported_with_their_problem(home: Path, yaml_text: str | None, problem: str) -> None:
    version_dir = home / "models" / "iris" / "vvvv"
    version_dir.mkdir(parents=True)
    if yaml_text is not None:
        (version_dir / "model.yaml").write_text(yaml_text)
    artifact = scan_store(home).artifacts[0]
    assert artifact.problem is not None and problem in artifact.problem


def test_huge_model_yaml_is_not_parsed(home: Path) -> None:
    version_dir = home / "models" / "iris" / "vvvv"
    version_dir.mkdir(parents=True)
    (version_dir / "model.yaml").write_bytes(b"#" * (2 * 1024 * 1024))
    assert "larger than" in (scan_store(home).artifacts[0].problem or "")


def test_invalid_tag_names_are_problems(home: Path) -> None:
    add_model(home, "iris", "aaaa", NOW)
    bad = home / "models" / "Iris_Upper" / "aaaa"
    bad.mkdir(parents=True)
    (bad / "model.yaml").write_text("name: Iris_Upper\nversion: aaaa\nlabels: {}\ncreation_time: '2026-01-01T00:00:00+00:00'\n")
    problems = {artifact.tag: artifact.problem for artifact in scan_store(home).artifacts}
    assert problems["iris:aaaa"] is None
    assert "invalid name" in (problems["Iris_Upper:aaaa"] or "")


def test_symlinks_are_reported_and_not_followed(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "vvvv"
    target.mkdir(parents=True)
    (target / "model.yaml").write_text("name: iris\nversion: vvvv\nlabels: {}\ncreation_time: '2026-01-01T00:00:00+00:00'\n")
    (home / "models" / "iris").mkdir()
    (home / "models" / "iris" / "vvvv").symlink_to(target)
    (home / "models" / "linked").symlink_to(tmp_path / "elsewhere")
    inventory = scan_store(home)
    assert inventory.artifacts == ()
    assert any("iris:vvvv is a symlink" in warning for warning in inventory.warnings)
    assert any("models/linked is a symlink" in warning for warning in inventory.warnings)


def test_latest_naming_nothing_is_a_warning(home: Path) -> None:
    add_model(home, "iris", "aaaa", NOW)
    (home / "models" / "iris" / "latest").write_text("gone")
    inventory = scan_store(home)
    assert not inventory.artifacts[0].is_latest
    assert any("latest names 'gone'" in warning for warning in inventory.warnings)


def test_stray_files_are_ignored(home: Path) -> None:
    add_model(home, "iris", "aaaa", NOW)
    (home / "models" / "README").write_text("hi")
    (home / "models" / "iris" / "notes.txt").write_text("hi")
    inventory = scan_store(home)
    assert [artifact.tag for artifact in inventory.artifacts] == ["iris:aaaa"]


def test_unreadable_version_is_a_problem(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version_dir = add_model(home, "iris", "aaaa", NOW)
    (version_dir / "sub").mkdir()
    real_scandir = os.scandir

    def refusing_scandir(path: object) -> object:
        if str(path).endswith("/sub"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr("daemon.inventory.os.scandir", refusing_scandir)
    assert "cannot read" in (scan_store(home).artifacts[0].problem or "")


def test_a_version_deleted_between_listing_and_reading_is_left_out(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from daemon import inventory

    add_model(home, "iris", "aaaa", NOW - timedelta(days=1))
    add_model(home, "iris", "bbbb", NOW)
    real_measure = inventory._measure_versions

    def someone_deletes_first(jobs: list, *rest: object) -> list:  # type: ignore[type-arg]
        shutil.rmtree(home / "models" / "iris" / "aaaa")  # e.g. `bentoml models delete` right after our listing
        return real_measure(jobs, *rest)

    monkeypatch.setattr(inventory, "_measure_versions", someone_deletes_first)
    scanned = scan_store(home)
    assert [(a.version, a.problem) for a in scanned.artifacts] == [("bbbb", None)]


# ---------------------------------------------------------------- a large cold scan split with a forked child


@pytest.fixture
def split_always(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Split every batch (not only large ones); record the size of each batch that was split."""
    from daemon import inventory

    split: list[int] = []
    real_split = inventory._measure_split

    def recording_split(jobs: list, *rest: object) -> list:  # type: ignore[type-arg]
        split.append(len(jobs))
        return real_split(jobs, *rest)

    monkeypatch.setattr(inventory, "SPLIT_MIN_VERSIONS", 1)
    monkeypatch.setattr(inventory, "_measure_split", recording_split)
    return split


def varied_store(home: Path) -> None:
    add_model(home, "iris", "aaaa", NOW - timedelta(days=2), labels={"stage": "prod"}, files=3)
    add_model(home, "iris", "bbbb", NOW - timedelta(days=1))
    add_bento(home, "svc", "b1", NOW, ["iris:aaaa"])
    for version, text in [("nodate", "name: bad\nversion: nodate\nlabels: {}\n"), ("broken", "name: [x\n"), ("none", None)]:
        (home / "models" / "bad" / version).mkdir(parents=True)
        if text is not None:
            (home / "models" / "bad" / version / "model.yaml").write_text(text)
    (home / "models" / "Upper" / "v1").mkdir(parents=True)


def test_a_split_scan_gives_exactly_the_inventory_of_one_process(home: Path, split_always: list[int]) -> None:
    varied_store(home)
    split = scan_store(home)
    assert split_always == [7]
    split_always.clear()
    from daemon import inventory

    inventory.SPLIT_MIN_VERSIONS = 10**9
    single = scan_store(home)
    assert split_always == []
    assert split == single
    assert [(a.created_at, a.modified_at) for a in split.artifacts] == [(a.created_at, a.modified_at) for a in single.artifacts]


def test_a_failed_child_leaves_its_half_to_the_parent(home: Path, split_always: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    varied_store(home)
    expected = scan_store(home)
    monkeypatch.setattr("daemon.inventory._measure_in_child", lambda jobs, write_fd: os._exit(3))
    assert scan_store(home) == expected


def test_no_child_is_forked_while_other_threads_run(home: Path, split_always: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    varied_store(home)
    expected = scan_store(home)

    def no_fork() -> int:
        raise AssertionError("forked a multi-threaded process")

    monkeypatch.setattr("daemon.inventory.os.fork", no_fork)
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        assert scan_store(home) == expected
    finally:
        release.set()
        worker.join()


def test_an_io_error_in_the_childs_half_is_reported_and_not_cached(
    home: Path, tmp_path: Path, split_always: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.scancache import ScanCache

    add_model(home, "iris", "aaaa", NOW - timedelta(days=2))
    version_dir = add_model(home, "iris", "zzzz", NOW - timedelta(days=1))  # last: in the child's half
    (version_dir / "sub").mkdir()
    os.utime(version_dir, (0, 0))
    real_scandir = os.scandir

    def refusing_scandir(path: object) -> object:
        if str(path).endswith("/sub"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr("daemon.inventory.os.scandir", refusing_scandir)
    state_dir = tmp_path / "state"
    problems = {artifact.version: artifact.problem for artifact in scan_store(home, state_dir).artifacts}
    assert split_always == [2]
    assert problems["aaaa"] is None and "cannot read" in (problems["zzzz"] or "")
    assert set(ScanCache.load(state_dir, home).remembered("models/iris")) == {"aaaa"}


def test_a_split_scan_carries_unknown_bento_references_back_from_the_child(home: Path, split_always: list[int]) -> None:
    varied_store(home)
    broken = add_bento(home, "svc", "b2", NOW, ["iris:bbbb"])  # bentos come last: in the child's half
    with open(broken / "bento.yaml", "a") as handle:
        handle.write("\n\tbroken: [\n")
    split = scan_store(home)
    assert split_always == [8]
    unknown = split.bento_references().unknown
    assert [(entry.subject, entry.reason.split(":")[0]) for entry in unknown] == [("bento svc:b2", "malformed bento.yaml")]
    assert {a.tag: a.references_unknown for a in split.artifacts if a.kind == "bento"}["svc:b1"] is None
