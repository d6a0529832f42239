"""store.collect_incomplete_after: killed saves and BentoML tmp leftovers, planned, re-checked under the lock, trashed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.audit import read_records
from daemon.cli import main
from tests.fakestore import add_model, make_home

NOW = datetime.now(timezone.utc).replace(microsecond=0)
EXIT_OK = 0


def age(path: Path, days: float) -> None:
    """Set the mtime of ``path`` and of everything in it (not following symlinks) ``days`` into the past."""
    stamp = (NOW - timedelta(days=days)).timestamp()
    for directory, _, files in os.walk(path):
        for name in files:
            os.utime(os.path.join(directory, name), (stamp, stamp), follow_symlinks=False)
        os.utime(directory, (stamp, stamp))
    if not path.is_dir():
        os.utime(path, (stamp, stamp), follow_symlinks=False)


def killed_save(home: Path, version: str, days: float) -> Path:
    """A version directory the way a killed save leaves it: weights, no model.yaml."""
    directory = home / "models" / "iris" / version
    directory.mkdir(parents=True)
    (directory / "weights.bin").write_bytes(b"w" * 4096)
    age(directory, days)
    return directory


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = make_home(tmp_path)
    add_model(home, "iris", "v1", NOW - timedelta(days=2))
    return home


def config(tmp_path: Path, home: Path, store: str = 'collect_incomplete_after = "7d"\n') -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[store]\nhome = "{home}"\n{store}'
                    f'[daemon]\nstate_dir = "{tmp_path / "state"}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n')
    return path


def run(command: str, config_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main([command, "--config", str(config_path), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_old_tmp_leftovers_are_collected_and_nothing_else_in_the_home(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = home / "tmp"
    tmp.mkdir()
    (tmp / "bentoml-model-abc.tar").write_bytes(b"t" * 1000)
    (tmp / "build" / "src").mkdir(parents=True)
    (tmp / "build" / "src" / "service.py").write_text("x" * 10)
    (tmp / "busy" / "deep").mkdir(parents=True)
    (tmp / "busy" / "deep" / "part.bin").write_bytes(b"p")
    (tmp / "fresh.tar").write_bytes(b"f")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.bin").write_bytes(b"keep me")
    (tmp / "link").symlink_to(outside, target_is_directory=True)
    (home / "envs" / "old").mkdir(parents=True)
    (home / ".yatai.yaml").write_text("contexts: []\n")
    for path in (tmp / "bentoml-model-abc.tar", tmp / "build", tmp / "busy", outside, home / "envs", home / ".yatai.yaml"):
        age(path, 10)
    stamp = (NOW - timedelta(days=10)).timestamp()
    os.utime(tmp / "link", (stamp, stamp), follow_symlinks=False)  # the link itself is old too
    os.utime(tmp / "busy" / "deep" / "part.bin")  # written just now, deep inside an old directory

    code, planned = run("plan", config(tmp_path, home), capsys)
    assert code == EXIT_OK
    tmp_actions = [a for a in planned["actions"] if a["kind"] == "tmp"]
    assert [(a["action"], a["name"], a["version"], a["policy"], a["size_bytes"]) for a in tmp_actions] == [
        ("delete", "bentoml-model-abc.tar", None, "store.collect_incomplete_after", 1000),
        ("delete", "build", None, "store.collect_incomplete_after", 10),
    ]
    assert tmp_actions[0]["reasons"][0].startswith("leftover in BentoML's tmp directory, last modified ")

    code, applied = run("apply", config(tmp_path, home), capsys)
    assert code == EXIT_OK
    assert [(a["name"], a["outcome"]) for a in applied["actions"]] == [("bentoml-model-abc.tar", "ok"), ("build", "ok")]
    assert sorted(path.name for path in tmp.iterdir()) == ["busy", "fresh.tar", "link"]
    assert (tmp / "link").is_symlink()
    assert (outside / "precious.bin").read_bytes() == b"keep me"
    assert (home / "envs" / "old").is_dir() and (home / ".yatai.yaml").exists()
    assert not any((home / ".retentiond" / "trash").iterdir())
    records = [r for r in read_records(tmp_path / "audit.jsonl") if r.get("kind") == "tmp"]
    assert [r["event"] for r in records] == ["artifact.delete_intended"] * 2 + ["artifact.deleted"] * 2


def test_a_tmp_directory_that_is_a_symlink_is_not_followed(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.bin").write_bytes(b"d")
    age(elsewhere, 30)
    (home / "tmp").symlink_to(elsewhere, target_is_directory=True)

    code, applied = run("apply", config(tmp_path, home), capsys)
    assert code == EXIT_OK
    assert applied["actions"] == []
    assert any("is a symlink; not followed" in warning for warning in applied["warnings"])
    assert (elsewhere / "data.bin").exists()


def test_killed_saves_are_kept_and_reported_when_collection_is_off(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    killed_save(home, "killed", days=30)
    (home / "tmp").mkdir()
    (home / "tmp" / "old.tar").write_bytes(b"t")
    age(home / "tmp" / "old.tar", 30)

    code, applied = run("apply", config(tmp_path, home, store=""), capsys)
    assert code == EXIT_OK and applied["actions"] == []
    assert "model iris:killed: no model.yaml; it is never deleted" in applied["warnings"]
    assert (home / "models" / "iris" / "killed").is_dir() and (home / "tmp" / "old.tar").exists()


def race_after_planning(monkeypatch: pytest.MonkeyPatch, home: Path, interfere: Callable[[Path], None]) -> None:
    """Make ``interfere(home)`` run once apply has planned, before it acts: a save going on after all."""
    from daemon import runner

    real_execute = runner.execute

    def interfere_then_execute(*arguments, **options):  # type: ignore[no-untyped-def]
        interfere(home)
        return real_execute(*arguments, **options)

    monkeypatch.setattr(runner, "execute", interfere_then_execute)


def test_an_old_version_with_a_broken_metadata_file_is_reported_never_collected(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = killed_save(home, "broken", days=30)
    (broken / "model.yaml").write_text("")
    age(broken, 30)

    code, applied = run("apply", config(tmp_path, home), capsys)
    assert code == EXIT_OK and applied["actions"] == []
    assert any(w.startswith("model iris:broken: ") and "never deleted" in w for w in applied["warnings"])
    assert (broken / "model.yaml").exists()


def _write_model_yaml(home: Path) -> None:
    (home / "models" / "iris" / "killed" / "model.yaml").write_text("name: iris\n")


def _touch_weights(home: Path) -> None:
    os.utime(home / "models" / "iris" / "killed" / "weights.bin")


def _replace_directory(home: Path) -> None:
    # Made while the old one still exists, so that it cannot get the old inode back.
    directory = home / "models" / "iris" / "killed"
    moved = directory.rename(home.parent / "moved-away")
    killed_save(home, "killed", days=30)
    shutil.rmtree(moved)


@pytest.mark.parametrize(("interfere", "why"), [
    (_write_model_yaml, "has its model.yaml now"),
    (_touch_weights, "was modified after"),
    (_replace_directory, "is not the entry that was planned"),
])
def test_collection_is_checked_again_under_the_lock(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    interfere: Callable[[Path], None], why: str,
) -> None:
    killed_save(home, "killed", days=30)
    race_after_planning(monkeypatch, home, interfere)
    code, applied = run("apply", config(tmp_path, home), capsys)

    assert code == EXIT_OK
    [action] = applied["actions"]
    assert (action["version"], action["outcome"]) == ("killed", "skipped")
    assert why in action["error"]
    assert (home / "models" / "iris" / "killed").is_dir()


def test_a_killed_first_save_of_a_name_takes_its_emptied_name_directory_with_it(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = home / "models" / "fresh" / "abc"
    directory.mkdir(parents=True)
    (directory / "weights.bin").write_bytes(b"w")
    age(directory.parent, 30)

    code, applied = run("apply", config(tmp_path, home), capsys)
    assert code == EXIT_OK
    assert [(a["name"], a["outcome"]) for a in applied["actions"]] == [("fresh", "ok")]
    assert not (home / "models" / "fresh").exists()
    assert (home / "models" / "iris" / "v1").is_dir()


@pytest.mark.parametrize("held_from", ["the scan", "the lock"])
def test_a_directory_without_metadata_that_a_process_holds_is_not_collected(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, held_from: str
) -> None:
    directory = killed_save(home, "killed", days=30)
    config_path = config(tmp_path, home, store='collect_incomplete_after = "7d"\n')
    if held_from == "the scan":
        # A policy makes the run look for holders before deciding.
        config_path.write_text(config_path.read_text() + '[[retention]]\nname = "ci"\nkeep_last = 5\n')
    holding: list[subprocess.Popen[bytes]] = []

    def hold() -> None:
        holding.append(subprocess.Popen(
            [sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'rb'); print('open', flush=True); time.sleep(60)",
             str(directory / "weights.bin")], stdout=subprocess.PIPE,
        ))
        assert holding[0].stdout is not None and holding[0].stdout.readline() == b"open\n"

    try:
        if held_from == "the scan":
            hold()
        else:
            race_after_planning(monkeypatch, home, lambda _: hold())
        code, applied = run("apply", config_path, capsys)
    finally:
        for process in holding:
            process.kill()
            process.wait()

    assert code == EXIT_OK
    assert directory.is_dir()
    if held_from == "the scan":
        assert applied["actions"] == []
        assert any(f"in use by pid {holding[0].pid}" in w and "not collected" in w for w in applied["warnings"])
    else:
        [action] = applied["actions"]
        assert action["outcome"] == "skipped" and "in use by" in action["error"]
