"""While any bento's model references cannot be read, no model version is deleted (DESIGN.md, "Rules of decision").

A bento does not carry copies of its models: deleting a model it references breaks it. So a bento
whose references are unknown, in any way, must hold back every model version, through retention
and disk policies alike, and the warning and each kept model version must name it. Each case below
breaks one bento of a store whose models a policy would otherwise delete.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.cli import main
from daemon.errors import EXIT_OK
from daemon.metadata import METADATA_MAX_BYTES
from tests.daemon.conftest import NOW
from tests.fakestore import add_bento, add_model
from tests.helpers.races import race_after_scan, run_apply, versions

OLD = NOW - timedelta(days=30)
MODEL_VERSIONS = {f"v{day}" for day in range(5)}
POLICIES = {
    "retention": ("ci", '[[retention]]\nname = "ci"\nkinds = ["model"]\nkeep_last = 1\n'),
    "disk": ("squeeze", '[[disk]]\nname = "squeeze"\nmax_store_size = "1B"\n'),
}
BLOCKED = "model deletions blocked: references of "


def make_store(home: Path) -> Path:
    """iris v0 (newest, latest) to v4, all old; bento svc:b1 references iris:v3. Return the bento's directory."""
    for day in range(5):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1))
    return add_bento(home, "svc", "b1", OLD, ["iris:v3"])


def age(path: Path) -> None:
    # Old enough for the scan cache too: the second run then answers from it.
    stamp = OLD.timestamp()
    for directory, subdirs, files in os.walk(path):
        for name in [*subdirs, *files]:
            os.utime(Path(directory, name), (stamp, stamp), follow_symlinks=False)
        os.utime(directory, (stamp, stamp), follow_symlinks=False)


def edit(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """A breaker that loads the bento's bento.yaml, changes the document and writes it back as BentoML would."""

    def rewrite(bento: Path) -> None:
        document = yaml.safe_load((bento / "bento.yaml").read_text())
        change(document)
        (bento / "bento.yaml").write_text(yaml.safe_dump(document, sort_keys=False))

    return rewrite


def write(content: bytes) -> Callable[[Path], None]:
    def overwrite(bento: Path) -> None:
        (bento / "bento.yaml").write_bytes(content)

    return overwrite


def append(content: bytes) -> Callable[[Path], None]:
    def add(bento: Path) -> None:
        with open(bento / "bento.yaml", "ab") as handle:
            handle.write(content)

    return add


def replace_with_directory(bento: Path) -> None:
    (bento / "bento.yaml").unlink()
    (bento / "bento.yaml").mkdir()


def replace_with_fifo(bento: Path) -> None:
    (bento / "bento.yaml").unlink()
    os.mkfifo(bento / "bento.yaml")


def replace_with_symlink(bento: Path) -> None:
    target = bento.parents[3] / "elsewhere.yaml"
    shutil.copy(bento / "bento.yaml", target)
    (bento / "bento.yaml").unlink()
    (bento / "bento.yaml").symlink_to(target)


def oversized(bento: Path) -> None:
    document = yaml.safe_load((bento / "bento.yaml").read_text())
    document["labels"] = {"padding": "x" * (METADATA_MAX_BYTES + 1)}
    (bento / "bento.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def move_out_and_link(levels: int) -> Callable[[Path], None]:
    """Move the bento's version dir (0), name dir (1) or ``bentos/`` (2) out of the store and link it back."""

    def relink(bento: Path) -> None:
        inside = bento.parents[levels - 1] if levels else bento
        outside = bento.parents[3] / f"outside-{inside.name}"
        inside.rename(outside)
        inside.symlink_to(outside)

    return relink


def services_models(document: dict[str, Any]) -> list[Any]:
    models: list[Any] = document["services"][0]["models"]
    return models


BENTO = "bento svc:b1"
WAYS: dict[str, tuple[Callable[[Path], None], str]] = {
    "bento.yaml missing": (lambda bento: (bento / "bento.yaml").unlink(), BENTO),
    "bento.yaml empty": (write(b""), BENTO),
    "malformed YAML (the issue's printf)": (append(b"\n\tbroken: [\n"), BENTO),
    "a YAML list, not a mapping": (write(b"- name: svc\n- version: b1\n"), BENTO),
    "a scalar, not a mapping": (write(b"svc b1\n"), BENTO),
    "bytes that are not UTF-8": (append(b"\nlabels: {owner: \xff\xfe}\n"), BENTO),
    "a directory in its place (read fails)": (replace_with_directory, BENTO),
    "a FIFO in its place": (replace_with_fifo, BENTO),
    "a symlink in its place": (replace_with_symlink, BENTO),
    "larger than the metadata limit": (oversized, BENTO),
    "names another bento": (edit(lambda document: document.update(name="other")), BENTO),
    "names another version": (edit(lambda document: document.update(version="b2")), BENTO),
    "models is not a list": (edit(lambda document: document.update(models="iris:v3")), BENTO),
    "models is null": (edit(lambda document: document.update(models=None)), BENTO),
    "services is not a list": (edit(lambda document: document.update(services={"Svc": document["services"][0]})), BENTO),
    "a service is not a mapping": (edit(lambda document: document["services"].append("Other")), BENTO),
    "a service's models is not a list": (edit(lambda document: document["services"][0].update(models={"tag": "iris:v3"})), BENTO),
    "an entry is a bare string": (edit(lambda document: services_models(document).append("iris:v4")), BENTO),
    "an entry has no tag": (edit(lambda document: services_models(document).append({"module": ""})), BENTO),
    "an entry's tag is a number": (edit(lambda document: services_models(document).append({"tag": 4})), BENTO),
    "an entry's tag has no version": (edit(lambda document: services_models(document).append({"tag": "iris"})), BENTO),
    "an entry's tag is not a valid tag": (edit(lambda document: services_models(document).append({"tag": "IRIS:V4"})), BENTO),
    "a top-level entry is null": (edit(lambda document: document.update(models=[{"tag": "iris:v4"}, None])), BENTO),
    "the version directory is a symlink": (move_out_and_link(0), "bentos/svc/b1"),
    "the name directory is a symlink": (move_out_and_link(1), "bentos/svc"),
    "bentos/ is a symlink": (move_out_and_link(2), "bentos"),
}


def write_config(root: Path, home: Path, policy: str) -> Path:
    config = root / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n[daemon]\nstate_dir = "{root / "state"}"\naudit_log = "{root / "log" / "audit.jsonl"}"\n'
        + policy
    )
    return config


def model_versions(home: Path) -> set[str]:
    return {entry.name for entry in (home / "models" / "iris").iterdir() if entry.is_dir()}


def assert_blocked(report: dict[str, Any], policy_name: str, subject: str) -> None:
    """No model version is planned or deleted; the warning names the bento; each model version says why it stays."""
    assert [action for action in report["actions"] if action["kind"] == "model"] == []
    assert any(warning.startswith(BLOCKED + subject + " unknown (") for warning in report["warnings"]), report["warnings"]
    kept = {
        entry["version"] for entry in report["kept"]
        if entry["kind"] == "model" and entry["policy"] == policy_name
        and any(reason.startswith(BLOCKED + subject + " unknown (") for reason in entry["reasons"])
    }
    assert kept == MODEL_VERSIONS, report["kept"]


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: a FIFO as bento.yaml once blocked the scan until a writer came."""

    def give_up(signum: int, frame: object) -> None:
        raise TimeoutError(f"the run took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_bento_whose_references_are_unknown_blocks_every_model_deletion(
    way: str, policy: str, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    breaker, subject = WAYS[way]
    bento = make_store(home)
    breaker(bento)
    age(home / "bentos")
    policy_name, policy_text = POLICIES[policy]
    config = write_config(tmp_path, home, policy_text)
    with bounded(60):
        assert main(["plan", "--config", str(config), "--json"]) == EXIT_OK
    assert_blocked(json.loads(capsys.readouterr().out), policy_name, subject)
    # The plan wrote the scan cache; apply reads the broken bento back from it.
    with bounded(60):
        assert main(["apply", "--config", str(config), "--json"]) == EXIT_OK
    assert_blocked(json.loads(capsys.readouterr().out), policy_name, subject)
    assert model_versions(home) == MODEL_VERSIONS


def test_the_same_store_with_a_healthy_bento_deletes_what_the_policy_says(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The control for the cases above: the store itself does let the policies delete.
    make_store(home)
    config = write_config(tmp_path, home, POLICIES["retention"][1])
    assert main(["apply", "--config", str(config), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert {(a["version"], a["outcome"]) for a in report["actions"]} == {("v1", "ok"), ("v2", "ok"), ("v4", "ok")}
    assert model_versions(home) == {"v0", "v3"}
    assert not [warning for warning in report["warnings"] if warning.startswith("model deletions blocked")]


def test_bento_deletions_go_on_while_model_deletions_are_blocked(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    append(b"\n\tbroken: [\n")(make_store(home))
    for day in range(3):
        add_bento(home, "old", f"o{day}", OLD - timedelta(days=day), [])
    age(home / "bentos")
    policies = POLICIES["retention"][1] + '[[retention]]\nname = "bentos"\nkinds = ["bento"]\nkeep_last = 1\n'
    assert main(["apply", "--config", str(write_config(tmp_path, home, policies)), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert {(a["kind"], a["name"], a["version"], a["outcome"]) for a in report["actions"]} == {
        ("bento", "old", "o1", "ok"), ("bento", "old", "o2", "ok")
    }
    assert model_versions(home) == MODEL_VERSIONS
    assert (home / "bentos" / "svc" / "b1").is_dir()


def test_several_unknown_bentos_are_each_named_in_a_warning(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(b"")(make_store(home))
    (add_bento(home, "other", "o1", OLD, ["iris:v4"]) / "bento.yaml").unlink()
    age(home / "bentos")
    assert main(["plan", "--config", str(write_config(tmp_path, home, POLICIES["retention"][1])), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    blocked = [warning for warning in report["warnings"] if warning.startswith(BLOCKED)]
    assert len(blocked) == 2
    assert any("bento svc:b1 unknown (bento.yaml is empty" in warning for warning in blocked)
    assert any("bento other:o1 unknown (no bento.yaml)" in warning for warning in blocked)
    reasons = {reason for entry in report["kept"] for reason in entry["reasons"] if reason.startswith(BLOCKED)}
    assert reasons == {"model deletions blocked: references of bento other:o1 unknown (no bento.yaml) and of 1 more"}


# ---------------------------------------------------------------- real permission errors, as an unprivileged user

UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
UNREADABLE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "bento.yaml unreadable": (lambda bento: bento / "bento.yaml", BENTO),
    "the version directory cannot be listed": (lambda bento: bento, BENTO),
    "the name directory cannot be listed": (lambda bento: bento.parent, "bentos/svc"),
    "bentos/ cannot be listed": (lambda bento: bento.parent.parent, "bentos"),
}


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A directory an unprivileged user can reach (pytest's own tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="retentiond-refs-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for directory, subdirs, _ in os.walk(root):
            for subdir in subdirs:
                os.chmod(os.path.join(directory, subdir), 0o755, follow_symlinks=False)
        shutil.rmtree(root)


def run_as_unprivileged(command: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    prefix = UNPRIVILEGED if os.geteuid() == 0 else []
    if prefix:
        for directory, subdirs, files in os.walk(root):
            for name in [directory, *(os.path.join(directory, entry) for entry in [*subdirs, *files])]:
                os.chown(name, 65534, 65534, follow_symlinks=False)
    environment = {**os.environ, "HOME": str(root)}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "daemon", *command], capture_output=True, text=True, cwd=root,
        env=environment, timeout=120,
    )


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs setpriv to drop root")
@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("way", sorted(UNREADABLE))
def test_a_bento_the_user_cannot_read_blocks_every_model_deletion(way: str, policy: str, shared_root: Path) -> None:
    home = shared_root / "bentoml"
    (home / "models").mkdir(parents=True)
    (home / "bentos").mkdir()
    bento = make_store(home)
    policy_name, policy_text = POLICIES[policy]
    config = write_config(shared_root, home, policy_text)
    choose, subject = UNREADABLE[way]
    locked = choose(bento)
    environment_check = run_as_unprivileged(["plan", "--config", str(config), "--json"], shared_root)
    assert environment_check.returncode == EXIT_OK, environment_check.stderr
    locked.chmod(0)
    try:
        for command in ("plan", "apply"):
            run = run_as_unprivileged([command, "--config", str(config), "--json"], shared_root)
            assert run.returncode == EXIT_OK, run.stderr
            assert_blocked(json.loads(run.stdout), policy_name, subject)
    finally:
        locked.chmod(0o700)
    assert model_versions(home) == MODEL_VERSIONS


# ---------------------------------------------------------------- a bento saved while apply runs (BentoML takes no lock)


def test_a_bento_saved_after_the_scan_that_references_a_planned_model_keeps_it(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    race_after_scan(monkeypatch, lambda store_home: add_bento(store_home, "svc", "new", NOW, ["iris:v3"]) and None)
    code, result = run_apply(write_config(), capsys)
    assert code == EXIT_OK
    assert {a["version"]: (a["outcome"], a["error"]) for a in result["actions"]} == {
        "v2": ("ok", None), "v4": ("ok", None),
        "v3": ("skipped", "bentos changed since the plan; now referenced by bento svc:new"),
    }
    assert versions(home) == {"v0", "v1", "v3"}


def test_a_bento_saved_after_the_scan_whose_references_cannot_be_read_stops_every_model_deletion(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def save_begins(store_home: Path) -> None:
        # What BentoML's save leaves for an instant: the version directory, bento.yaml not yet written.
        (store_home / "bentos" / "svc" / "new").mkdir(parents=True)
        (store_home / "bentos" / "svc" / "new" / "bento.yaml").write_bytes(b"")

    race_after_scan(monkeypatch, save_begins)
    code, result = run_apply(write_config(), capsys)
    assert code == EXIT_OK
    reason = "bentos changed since the plan; model deletions blocked: references of bento svc:new unknown (bento.yaml is empty"
    assert {a["version"] for a in result["actions"]} == {"v2", "v3", "v4"}
    assert all(a["outcome"] == "skipped" and a["error"].startswith(reason) for a in result["actions"]), result["actions"]
    assert versions(home) == set(five_versions)


def test_a_bento_saved_between_two_batches_is_seen_before_the_second(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from daemon import executor
    from daemon.store import Store

    monkeypatch.setattr(executor, "BATCH_SIZE", 1)
    real_move = Store.move_to_trash

    def move_then_a_bento_appears(self: Store, path: Path, run_id: str) -> Path:
        trashed = real_move(self, path, run_id)
        if not (home / "bentos" / "svc").exists():
            add_bento(home, "svc", "new", NOW, ["iris:v2"])
        return trashed

    monkeypatch.setattr(Store, "move_to_trash", move_then_a_bento_appears)
    code, result = run_apply(write_config(), capsys)
    assert code == EXIT_OK
    outcomes = [(a["version"], a["outcome"]) for a in result["actions"]]
    assert outcomes == [("v4", "ok"), ("v3", "ok"), ("v2", "skipped")]
    assert versions(home) == {"v0", "v1", "v2"}


def test_bentos_changing_while_they_are_read_again_stop_the_batch(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from daemon import executor

    race_after_scan(monkeypatch, lambda store_home: add_bento(store_home, "svc", "new", NOW, []) and None)
    real_scan_bentos = executor.scan_bentos

    def read_while_a_save_goes_on(store_home: Path) -> Any:
        bentos = real_scan_bentos(store_home)
        with open(store_home / "bentos" / "svc" / "new" / "bento.yaml", "a") as handle:
            handle.write("# still being written\n")
        return bentos

    monkeypatch.setattr(executor, "scan_bentos", read_while_a_save_goes_on)
    code, result = run_apply(write_config(), capsys)
    assert code == EXIT_OK
    errors = {a["error"] for a in result["actions"]}
    assert errors == {
        "bentos changed since the plan; model deletions blocked: references of bentos unknown "
        "(they changed while they were read again)"
    }
    assert versions(home) == set(five_versions)


def test_bentos_unchanged_since_the_scan_are_not_read_again(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from daemon import executor

    add_bento(home, "svc", "b1", OLD, ["iris:v1"])
    read_again: list[Path] = []
    real_scan_bentos = executor.scan_bentos
    monkeypatch.setattr(executor, "scan_bentos", lambda store_home: read_again.append(store_home) or real_scan_bentos(store_home))
    code, result = run_apply(write_config(), capsys)
    assert code == EXIT_OK
    assert {(a["version"], a["outcome"]) for a in result["actions"]} == {("v2", "ok"), ("v3", "ok"), ("v4", "ok")}
    assert read_again == []


def test_bentos_that_cannot_be_read_again_stop_the_model_deletions_naming_the_reason(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from daemon import executor

    race_after_scan(monkeypatch, lambda store_home: add_bento(store_home, "svc", "new", NOW, []) and None)

    def failing_disk(store_home: Path) -> Any:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(executor, "scan_bentos", failing_disk)
    code, result = run_apply(write_config(), capsys)
    assert code == EXIT_OK
    assert {a["error"] for a in result["actions"]} == {
        "bentos changed since the plan; model deletions blocked: references of bentos unknown "
        "(cannot read them again: Input/output error)"
    }
    assert versions(home) == set(five_versions)
