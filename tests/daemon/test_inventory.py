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
        "models:\n- tag: iris:cccc\n  module: x\n- iris:dddd\n"
    )
    references = scan_store(home).referencing_bentos()
    assert references == {"iris:aaaa": ["svc:b1"], "iris:cccc": ["old:b0"], "iris:dddd": ["old:b0"]}


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
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr("daemon.inventory.os.scandir", refusing_scandir)
    assert "cannot read" in (scan_store(home).artifacts[0].problem or "")
