"""A hostile store: symlinks out of the store, broken metadata, bad names, unreadable directories,
a dangling ``latest``, a store root that is no BentoML home.

Each test puts canary files outside the store root and checks them byte for byte (and by
mtime and mode) after the run; each hostile entry must be reported (a plan warning, or exit 78
for the root), and the valid versions must still be deleted as planned. Tests run as root in
CI, where chmod 000 stops nobody, so unreadable directories are also simulated by a scandir
that answers EACCES for chosen paths.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.cli import main
from daemon.errors import EXIT_CONFIG, EXIT_OK
from tests.daemon.conftest import NOW
from tests.fakestore import add_bento, add_model, model_yaml

OLD = NOW - timedelta(days=30)
PLANNED = {"v2", "v3", "v4"}  # five_versions with the default keep_last = 2
Snapshot = dict[str, tuple[str, int, str, int, int]]


@dataclass
class Canaries:
    """Files and directories outside the store that no run may touch, and what they looked like."""

    root: Path
    before: Snapshot

    def snapshot(self) -> Snapshot:
        state: Snapshot = {".": _describe(self.root)}
        for directory, subdirs, files in os.walk(self.root):
            for entry in [*subdirs, *files]:
                path = Path(directory, entry)
                state[str(path.relative_to(self.root))] = _describe(path)
        return state

    def assert_untouched(self) -> None:
        after = self.snapshot()
        assert after == self.before, {key: (self.before.get(key), after.get(key)) for key in set(after) | set(self.before)
                                      if self.before.get(key) != after.get(key)}


def _describe(path: Path) -> tuple[str, int, str, int, int]:
    info = path.lstat()
    if path.is_symlink():
        return ("link", 0, os.readlink(path), info.st_mtime_ns, info.st_mode)
    if path.is_dir():
        return ("dir", 0, "", info.st_mtime_ns, info.st_mode)
    return ("file", info.st_size, hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mtime_ns, info.st_mode)


@pytest.fixture
def outside(tmp_path: Path) -> Canaries:
    """A directory next to the store holding what a hostile store points at: a precious file, a directory
    that looks exactly like an old, deletable iris version, and a whole model name. Each test ends with
    ``outside.assert_untouched()``."""
    root = tmp_path / "outside"
    (root / "victim-version").mkdir(parents=True)
    (root / "victim-version" / "model.yaml").write_text(model_yaml("iris", "evil", OLD))
    (root / "victim-version" / "weights.bin").write_bytes(b"not yours" * 100)
    for index in range(4):
        add_model(root, "evil", f"e{index}", OLD - timedelta(days=index), set_latest=False)
    (root / "precious.txt").write_text("keep me")
    (root / "precious-dir").mkdir()
    (root / "precious-dir" / "data.bin").write_bytes(os.urandom(64))
    stamp = OLD.timestamp()
    for directory, _, files in os.walk(root):
        for name in files:
            os.utime(Path(directory, name), (stamp, stamp))
        os.utime(directory, (stamp, stamp))
    canaries = Canaries(root, {})
    canaries.before = canaries.snapshot()
    return canaries


def plan(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["plan", "--config", str(config), "--json"]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def apply(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["apply", "--config", str(config), "--json"])
    return code, json.loads(capsys.readouterr().out)


def iris_versions(home: Path) -> set[str]:
    return {entry.name for entry in (home / "models" / "iris").iterdir() if entry.is_dir() or entry.is_symlink()}


def assert_run_goes_on(result: dict[str, Any], home: Path) -> None:
    """The valid versions were deleted as planned, and only they."""
    assert {(a["version"], a["outcome"]) for a in result["actions"]} == {(version, "ok") for version in PLANNED}
    assert not iris_versions(home) & PLANNED


def age(path: Path) -> Path:
    """Make a version old by mtime too (min_age), never touching what a symlink in it points at."""
    stamp = OLD.timestamp()
    for directory, subdirs, files in os.walk(path):
        for name in [*subdirs, *files]:
            os.utime(Path(directory, name), (stamp, stamp), follow_symlinks=False)
        os.utime(directory, (stamp, stamp), follow_symlinks=False)
    return path


def broken_version(home: Path, version: str, model_yaml_bytes: bytes | None, name: str = "iris") -> Path:
    directory = home / "models" / name / version
    directory.mkdir(parents=True)
    if model_yaml_bytes is not None:
        (directory / "model.yaml").write_bytes(model_yaml_bytes)
    (directory / "weights.bin").write_bytes(b"w" * 100)
    return age(directory)


# ---------------------------------------------------------------- symlinks


def test_symlinked_version_dir_pointing_outside_is_reported_and_never_followed(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], outside: Canaries,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (home / "models" / "iris" / "evil").symlink_to(outside.root / "victim-version")
    config = write_config()
    planned = plan(config, capsys)
    assert "model iris:evil is a symlink; not followed, never deleted" in planned["warnings"]
    assert "evil" not in {entry["version"] for entry in planned["actions"]}
    code, result = apply(config, capsys)
    assert code == EXIT_OK
    assert_run_goes_on(result, home)
    assert (home / "models" / "iris" / "evil").is_symlink()
    outside.assert_untouched()


def test_symlinked_name_dir_pointing_outside_is_reported_and_never_followed(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], outside: Canaries,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (home / "models" / "evil").symlink_to(outside.root / "models" / "evil")
    config = write_config('[[retention]]\nname = "ci"\nkeep_last = 2\n[[disk]]\nname = "squeeze"\nmax_store_size = "1B"\n')
    planned = plan(config, capsys)
    assert "models/evil is a symlink; not followed, never deleted" in planned["warnings"]
    assert "evil" not in {entry["name"] for entry in planned["actions"] + planned["kept"]}
    code, result = apply(config, capsys)
    assert code == EXIT_OK
    assert {a["name"] for a in result["actions"]} == {"iris"}
    assert (home / "models" / "evil").is_symlink()
    outside.assert_untouched()


def test_symlinks_and_hard_links_inside_a_deleted_version_leave_their_targets_alone(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], outside: Canaries,
    capsys: pytest.CaptureFixture[str],
) -> None:
    doomed = home / "models" / "iris" / "v3"
    (doomed / "escape-dir").symlink_to(outside.root / "precious-dir")
    (doomed / "escape-file").symlink_to(outside.root / "precious.txt")
    (doomed / "nested").mkdir()
    (doomed / "nested" / "escape-up").symlink_to("../../../../../outside")
    os.link(outside.root / "precious-dir" / "data.bin", doomed / "hard-link.bin")
    outside.before = outside.snapshot()  # the hard link changed the link count, not the file
    age(doomed)
    own_bytes = sum(path.lstat().st_size for path in doomed.rglob("*") if path.is_file() and not path.is_symlink())
    config = write_config()
    sizes = {action["version"]: action["size_bytes"] for action in plan(config, capsys)["actions"]}
    assert sizes["v3"] == own_bytes  # the scan counted the version's own files, not what its links point at
    code, result = apply(config, capsys)
    assert code == EXIT_OK
    assert_run_goes_on(result, home)
    outside.assert_untouched()


def test_symlink_left_in_the_trash_is_removed_without_following_it(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], outside: Canaries,
    capsys: pytest.CaptureFixture[str],
) -> None:
    leftover = home / ".retentiond" / "trash" / "deadrun" / "models" / "iris"
    leftover.mkdir(parents=True)
    (leftover / "v9").symlink_to(outside.root / "precious-dir")
    (home / ".retentiond" / "trash" / "linkrun").symlink_to(outside.root)
    code, result = apply(write_config(), capsys)
    assert code == EXIT_OK
    assert_run_goes_on(result, home)
    assert not (home / ".retentiond" / "trash" / "deadrun").exists()
    outside.assert_untouched()


def test_models_dir_symlinked_outside_never_loses_anything(
    home: Path, write_config: Callable[..., Path], outside: Canaries, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "models").rmdir()
    (home / "models").symlink_to(outside.root / "models")
    code, result = apply(write_config(), capsys)
    assert code == EXIT_OK
    assert {a["outcome"] for a in result["actions"]} <= {"skipped"}
    outside.assert_untouched()


def test_models_dir_symlinked_outside_is_reported_and_not_planned(
    home: Path, write_config: Callable[..., Path], outside: Canaries, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "models").rmdir()
    (home / "models").symlink_to(outside.root / "models")
    planned = plan(write_config('[[retention]]\nname = "ci"\nkeep_last = 1\n'), capsys)
    assert planned["actions"] == []
    assert any("models is a symlink" in warning for warning in planned["warnings"]), planned["warnings"]
    outside.assert_untouched()


@pytest.mark.parametrize("link", [".retentiond", ".retentiond/trash"])
def test_state_or_trash_dir_symlinked_outside_is_refused_and_nothing_outside_is_touched(
    link: str, home: Path, five_versions: list[str], write_config: Callable[..., Path], outside: Canaries,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = outside.root / "precious-dir"
    work = target / ("trash/run" if link == ".retentiond" else "project")
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("someone's work")
    outside.before = outside.snapshot()
    if link == ".retentiond/trash":
        (home / ".retentiond").mkdir()
    (home / link).symlink_to(target)
    code = main(["apply", "--config", str(write_config())])
    assert code == EXIT_CONFIG
    assert f"{home / link} is a symlink or not a directory" in capsys.readouterr().err
    assert iris_versions(home) == set(five_versions)
    outside.assert_untouched()


# ---------------------------------------------------------------- broken metadata and names

BROKEN_METADATA = {
    "missing": (None, "no model.yaml"),
    "empty": (b"", "model.yaml is empty or not a mapping"),
    "not-a-mapping": (b"- just\n- a list\n", "model.yaml is empty or not a mapping"),
    "malformed": (b"name: iris\nversion: [unclosed\n", "malformed model.yaml"),
    "huge": (model_yaml("iris", "broken", OLD).encode() + b"# " + b"x" * (2 * 1024 * 1024) + b"\n", "larger than 1048576 bytes"),
    "naive-creation-time": (model_yaml("iris", "broken", OLD).replace("+00:00", "").encode(), "creation_time without timezone"),
    "unreadable-creation-time": (model_yaml("iris", "broken", OLD).replace(OLD.isoformat(), "yesterday").encode(),
                                 "unreadable creation_time"),
    "no-creation-time": (b"name: iris\nversion: broken\nlabels: {}\n", "has no creation_time"),
    "creation-time-past-year-9999": (model_yaml("iris", "broken", OLD).replace(OLD.isoformat(), "9999-12-31T23:59:59-05:00").encode(),
                                     "creation_time outside the years 1 to 9999"),
    "no-labels": (model_yaml("iris", "broken", OLD).replace("labels: {}", "labels: null").encode(), "no labels mapping"),
    "names-another-version": (model_yaml("iris", "v0", OLD).encode(), "names iris:v0, not its directory"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_METADATA))
def test_broken_model_yaml_is_reported_never_deleted_and_the_run_goes_on(
    case: str, home: Path, five_versions: list[str], write_config: Callable[..., Path], outside: Canaries,
    capsys: pytest.CaptureFixture[str],
) -> None:
    content, expected = BROKEN_METADATA[case]
    broken_version(home, "broken", content)
    config = write_config()
    planned = plan(config, capsys)
    warning = next((w for w in planned["warnings"] if w.startswith("model iris:broken:")), "")
    assert expected in warning and warning.endswith("it is never deleted"), planned["warnings"]
    kept = [reason for entry in planned["kept"] if entry["version"] == "broken" for reason in entry["reasons"]]
    assert any(reason.startswith("invalid store entry:") for reason in kept)
    code, result = apply(config, capsys)
    assert code == EXIT_OK
    assert_run_goes_on(result, home)
    assert (home / "models" / "iris" / "broken" / "weights.bin").exists()
    outside.assert_untouched()


def test_model_yaml_that_is_a_symlink_out_of_the_store_is_not_read(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], outside: Canaries,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = broken_version(home, "linked", None)
    (directory / "model.yaml").symlink_to(outside.root / "victim-version" / "model.yaml")
    planned = plan(write_config(), capsys)
    assert any(w.startswith("model iris:linked: cannot open model.yaml") for w in planned["warnings"]), planned["warnings"]
    code, result = apply(write_config(), capsys)
    assert code == EXIT_OK
    assert_run_goes_on(result, home)
    outside.assert_untouched()


INVALID_TAGS = {
    "upper-case-name": ("Iris", "v1", "invalid name 'Iris'"),
    "dot-name": (".tmp-x", "v1", "invalid name '.tmp-x'"),
    "upper-case-version": ("iris", "BAD", "invalid version 'BAD'"),
    "too-long-version": ("iris", "v" * 64, "invalid version"),
    "trailing-dash-version": ("iris", "v1-", "invalid version 'v1-'"),
}


@pytest.mark.parametrize("case", sorted(INVALID_TAGS))
def test_invalid_tag_names_are_reported_never_deleted_and_the_run_goes_on(
    case: str, home: Path, five_versions: list[str], write_config: Callable[..., Path], outside: Canaries,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, version, expected = INVALID_TAGS[case]
    broken_version(home, version, model_yaml(name, version, OLD).encode(), name=name)
    config = write_config()
    planned = plan(config, capsys)
    assert any(w.startswith(f"model {name}:{version}: {expected}") for w in planned["warnings"]), planned["warnings"]
    code, result = apply(config, capsys)
    assert code == EXIT_OK
    assert_run_goes_on(result, home)
    assert (home / "models" / name / version / "model.yaml").exists()
    outside.assert_untouched()


def test_empty_directory_with_an_invalid_name_is_reported(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "models" / ".tmp-upload").mkdir()
    planned = plan(write_config(), capsys)
    assert any(".tmp-upload" in warning for warning in planned["warnings"]), planned["warnings"]


# ---------------------------------------------------------------- unreadable entries, dangling latest


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Paths for which os.scandir and os.open answer EACCES, as chmod 000 does for anyone but root."""
    blocked: set[str] = set()
    real_scandir, real_open = os.scandir, os.open

    def scandir(path: Any = ".") -> Any:
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) in blocked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    def open_file(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) in blocked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "open", open_file)
    return blocked


def test_unreadable_directories_and_metadata_are_reported_and_the_run_goes_on(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], outside: Canaries,
    unreadable: set[str], capsys: pytest.CaptureFixture[str],
) -> None:
    locked_version = add_model(home, "iris", "locked", OLD, set_latest=False)
    hidden_yaml = add_model(home, "iris", "hidden", OLD, set_latest=False)
    for index in range(3):
        add_model(home, "secret", f"s{index}", OLD - timedelta(days=index))
    unreadable.update({str(locked_version), str(hidden_yaml / "model.yaml"), str(home / "models" / "secret")})
    config = write_config()
    planned = plan(config, capsys)
    assert f"model secret: cannot list {home / 'models' / 'secret'}: Permission denied" in planned["warnings"]
    assert f"model iris:locked: cannot read {locked_version}: Permission denied; it is never deleted" in planned["warnings"]
    assert "model iris:hidden: cannot open model.yaml: Permission denied; it is never deleted" in planned["warnings"]
    code, result = apply(config, capsys)
    assert code == EXIT_OK
    assert_run_goes_on(result, home)
    assert {"locked", "hidden"} <= iris_versions(home)
    assert len(list((home / "models" / "secret").iterdir())) == 4
    outside.assert_untouched()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads through chmod 000; the scandir stand-in above covers it")
def test_chmod_000_version_directory_is_reported_and_never_deleted(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    locked = add_model(home, "iris", "locked", OLD, set_latest=False)
    locked.chmod(0)
    try:
        config = write_config()
        planned = plan(config, capsys)
        assert any(w.startswith("model iris:locked: cannot read") for w in planned["warnings"]), planned["warnings"]
        code, result = apply(config, capsys)
        assert code == EXIT_OK
        assert_run_goes_on(result, home)
    finally:
        locked.chmod(0o700)
    assert (locked / "model.yaml").exists()


def test_unreadable_models_directory_is_a_clear_error_not_a_traceback(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], unreadable: set[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    unreadable.add(str(home / "models"))
    code = main(["apply", "--config", str(write_config())])
    assert code != EXIT_OK
    assert f"cannot list {home / 'models'}" in capsys.readouterr().err
    assert iris_versions(home) == set(five_versions)


def test_latest_naming_nothing_is_reported_and_the_run_goes_on(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "models" / "iris" / "latest").write_text("ghost")
    config = write_config()
    planned = plan(config, capsys)
    assert "model iris: latest names 'ghost', which does not exist" in planned["warnings"]
    code, result = apply(config, capsys)
    assert code == EXIT_OK
    assert_run_goes_on(result, home)
    assert iris_versions(home) == {"v0", "v1"}


# ---------------------------------------------------------------- the store root


def _root_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[Path, str]]:
    fake_home = tmp_path / "user"
    (fake_home / "models").mkdir(parents=True)  # even a $HOME that looks like a BentoML home is refused
    monkeypatch.setenv("HOME", str(fake_home))
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "link-to-root").symlink_to("/")
    (tmp_path / "models-is-a-link").mkdir()
    (tmp_path / "models-is-a-link" / "models").symlink_to(tmp_path / "empty")
    return {
        "root": (Path("/"), "refusing to treat it as a BentoML home"),
        "symlink-to-root": (tmp_path / "link-to-root", "refusing to treat it as a BentoML home"),
        "home-dir": (fake_home, "refusing to treat it as a BentoML home"),
        "not-a-bentoml-home": (tmp_path / "empty", "is not a BentoML home"),
        "only-a-symlinked-models": (tmp_path / "models-is-a-link", "is not a BentoML home"),
        "a-file": (tmp_path / "a-file", "is not a directory"),
        "missing": (tmp_path / "nowhere", "does not exist"),
    }


@pytest.mark.parametrize("case", ["root", "symlink-to-root", "home-dir", "not-a-bentoml-home", "only-a-symlinked-models",
                                  "a-file", "missing"])
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_store_root_that_is_not_a_bentoml_home_exits_78_and_touches_nothing(
    case: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store_root, expected = _root_cases(tmp_path, monkeypatch)[case]
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nhome = "{store_root}"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        f'audit_log = "{tmp_path / "audit.jsonl"}"\n[[retention]]\nname = "ci"\nkeep_last = 1\n'
    )
    before = sorted(os.listdir(tmp_path))
    assert main([command, "--config", str(config)]) == EXIT_CONFIG
    assert expected in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == before  # no lock, no trash, no audit log anywhere
    if store_root.is_dir():
        assert not (store_root / ".retentiond").exists()


# ---------------------------------------------------------------- all at once


def test_everything_hostile_at_once_is_reported_and_the_valid_versions_go_once_the_broken_bento_is_gone(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], outside: Canaries,
    unreadable: set[str], capsys: pytest.CaptureFixture[str],
) -> None:
    (home / "models" / "iris" / "evil").symlink_to(outside.root / "victim-version")
    (home / "models" / "evil").symlink_to(outside.root / "models" / "evil")
    (home / "models" / "iris" / "v4" / "escape").symlink_to(outside.root / "precious-dir")
    age(home / "models" / "iris" / "v4")
    for case, (content, _) in BROKEN_METADATA.items():
        broken_version(home, case, content.replace(b"broken", case.encode()) if content else content)
    for name, version, _ in INVALID_TAGS.values():
        broken_version(home, version, model_yaml(name, version, OLD).encode(), name=name)
    unreadable.add(str(add_model(home, "iris", "locked", OLD, set_latest=False)))
    add_bento(home, "svc", "b1", OLD, ["iris:v0"])
    broken_bento = home / "bentos" / "svc" / "broken"
    broken_bento.mkdir()
    (broken_bento / "bento.yaml").write_text("service: [unclosed\n")
    age(broken_bento)
    config = write_config('[[retention]]\nname = "ci"\nkeep_last = 2\n[[disk]]\nname = "squeeze"\nmax_store_size = "1B"\n')
    planned = plan(config, capsys)
    assert len(planned["warnings"]) >= 2 + len(BROKEN_METADATA) + len(INVALID_TAGS) + 2
    assert any(w.startswith("bento svc:broken: malformed bento.yaml") for w in planned["warnings"]), planned["warnings"]
    # The broken bento may reference any model: nothing of models goes while it is there.
    assert any(w.startswith("model deletions blocked: references of bento svc:broken") for w in planned["warnings"])
    code, result = apply(config, capsys)
    assert code == EXIT_OK
    assert [a for a in result["actions"] if a["kind"] == "model"] == []
    (broken_bento / "bento.yaml").unlink()
    broken_bento.rmdir()
    code, result = apply(config, capsys)
    assert code == EXIT_OK
    # The disk policy evicts everything it may; only v0 (latest) is left of the valid versions.
    assert {(a["version"], a["outcome"]) for a in result["actions"]} == {(v, "ok") for v in ("v1", "v2", "v3", "v4")}
    remaining = iris_versions(home)
    assert {"v0", "evil", "locked", *BROKEN_METADATA} <= remaining
    assert sorted(path.name for path in (home / "bentos" / "svc").iterdir()) == ["b1", "latest"]
    assert not remaining & {"v1", "v2", "v3", "v4"}
    outside.assert_untouched()
