"""store.push_before_delete: the real `bentoml` CLI pushes to the stand-in registry, then retentiond deletes.

Where the real CLI cannot show a case (a push that hangs), a stub `bentoml` on PATH stands in; the
test says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.audit import read_records
from tests.fakestore import add_bento, add_model, make_home
from tests.helpers.pushed import NOW, TOKEN, deleted, kept_reasons, run_json, versions, write_config
from tests.registry_server import RegistryServer

EXIT_OK, EXIT_FAILED = 0, 1
KEEP_TWO = '[[retention]]\nname = "ci"\nkeep_last = 2\n'


@pytest.fixture
def server() -> Iterator[RegistryServer]:
    with RegistryServer(token=TOKEN, watchdog_seconds=180) as registry:
        yield registry


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = make_home(tmp_path)
    for day in range(4):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1))
    return home


def events(tmp_path: Path, version: str) -> list[str]:
    return [r["event"] for r in read_records(tmp_path / "audit.jsonl") if r.get("version") == version]


@pytest.mark.bentoml
def test_versions_bentocloud_lacks_are_pushed_with_the_real_cli_then_deleted(server: RegistryServer, home: Path, tmp_path: Path) -> None:
    for day in range(3):
        add_bento(home, "svc", f"b{day}", NOW - timedelta(days=day + 1), [])
    server.hold("model", "iris:v3", status="failed")
    config = write_config(tmp_path, home, server, KEEP_TWO, store="push_before_delete = true\n")

    code, planned, _ = run_json(config, "plan")
    assert code == EXIT_OK
    assert deleted(planned) == [("bento", "b2"), ("model", "v2"), ("model", "v3")]
    reasons = {action["version"]: action["reasons"] for action in planned["actions"]}
    assert reasons["v2"] == ["not kept by any rule", "push to BentoCloud first (not in BentoCloud)"]
    assert reasons["v3"] == ["not kept by any rule", "push to BentoCloud first (upload to BentoCloud failed)"]
    assert server.uploads == {}

    code, applied, stderr = run_json(config, "apply")
    assert code == EXIT_OK, stderr
    assert sorted((a["version"], a["outcome"]) for a in applied["actions"]) == [("b2", "ok"), ("v2", "ok"), ("v3", "ok")]
    assert set(server.uploads) == {("model", "iris:v2"), ("model", "iris:v3"), ("bento", "svc:b2")}
    assert "./model.yaml" in server.uploads[("model", "iris:v2")] and "./bento.yaml" in server.uploads[("bento", "svc:b2")]
    assert {server.models[tag]["upload_status"] for tag in ("iris:v2", "iris:v3")} == {"success"}
    assert versions(home, "models", "iris") == {"v0", "v1"}
    assert events(tmp_path, "v2") == [
        "artifact.delete_intended", "artifact.push_intended", "artifact.pushed", "artifact.deleted",
    ]
    # BentoML's archive went to its tmp directory and is gone again.
    assert not list((home / "tmp").glob("bentoml-*.tar"))


@pytest.mark.bentoml
def test_a_push_bentocloud_does_not_confirm_keeps_the_version(server: RegistryServer, home: Path, tmp_path: Path) -> None:
    server.upload_outcome = "failed"
    config = write_config(tmp_path, home, server, KEEP_TWO, store="push_before_delete = true\n")
    code, applied, _ = run_json(config, "apply")

    assert code == EXIT_FAILED
    assert {(a["version"], a["outcome"]) for a in applied["actions"]} == {("v2", "failed"), ("v3", "failed")}
    assert all(a["error"] == "not deleted: pushed, but BentoCloud says: upload to BentoCloud failed" for a in applied["actions"])
    assert versions(home, "models", "iris") == {"v0", "v1", "v2", "v3"}
    assert events(tmp_path, "v2") == [
        "artifact.delete_intended", "artifact.push_intended", "artifact.push_failed", "artifact.delete_failed",
    ]


def test_a_push_that_hangs_is_stopped_after_push_timeout(
    server: RegistryServer, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stub `bentoml` first on PATH: it records what it was given, then hangs like a stalled upload.
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir()
    stub = stub_dir / "bentoml"
    stub.write_text(f'#!/bin/sh\necho "$* $BENTO_CLOUD_API_ENDPOINT $BENTO_CLOUD_API_KEY $BENTOML_HOME" >> {tmp_path}/calls\nsleep 60\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub_dir}{os.pathsep}{os.environ['PATH']}")
    config = write_config(tmp_path, home, server, KEEP_TWO, store='push_before_delete = true\npush_timeout = "2s"\n')

    started = time.monotonic()
    code, applied, _ = run_json(config, "apply")

    assert time.monotonic() - started < 40
    assert code == EXIT_FAILED
    assert {(a["version"], a["outcome"]) for a in applied["actions"]} == {("v2", "failed"), ("v3", "failed")}
    assert "did not finish within 2s" in applied["actions"][0]["error"]
    calls = (tmp_path / "calls").read_text().splitlines()
    assert sorted(calls) == [f"models push iris:{v} {server.url} {TOKEN} {home}" for v in ("v2", "v3")]
    assert versions(home, "models", "iris") == {"v0", "v1", "v2", "v3"}


def test_no_room_for_the_push_archive_keeps_the_version_and_says_so(server: RegistryServer, home: Path, tmp_path: Path) -> None:
    # A sparse weights file makes v2 far bigger than the free space of the filesystem holding BentoML's tmp.
    weights = home / "models" / "iris" / "v2" / "huge.bin"
    with weights.open("wb") as handle:
        handle.truncate(8 * 1024**4)
    old = (NOW - timedelta(days=3)).timestamp()
    for path in (weights, weights.parent):
        os.utime(path, (old, old))
    server.hold("model", "iris:v3")
    config = write_config(tmp_path, home, server, KEEP_TWO, store="push_before_delete = true\n")
    code, planned, _ = run_json(config, "plan")

    assert code == EXIT_OK
    assert deleted(planned) == [("model", "v3")]
    [reason] = kept_reasons(planned, "v2")
    assert reason.startswith("not in BentoCloud; no room to push it: needs 8.1 TiB free in ")
    assert server.uploads == {}


def test_sigterm_during_a_push_stops_it_and_deletes_nothing(
    server: RegistryServer, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same hanging stub `bentoml`; push_timeout is long, so only the stop request can end the push.
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir()
    (stub_dir / "bentoml").write_text(f"#!/bin/sh\necho started >> {tmp_path}/calls\nsleep 60\n")
    (stub_dir / "bentoml").chmod(0o755)
    environment = dict(os.environ, PATH=f"{stub_dir}{os.pathsep}{os.environ['PATH']}")
    config = write_config(tmp_path, home, server, KEEP_TWO, store='push_before_delete = true\npush_timeout = "10m"\n')
    apply = subprocess.Popen([sys.executable, "-m", "daemon", "apply", "--json", "--config", str(config)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "calls").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (tmp_path / "calls").exists(), "the push never started"
        stopped_at = time.monotonic()
        apply.send_signal(signal.SIGTERM)
        stdout, _ = apply.communicate(timeout=60)
    finally:
        if apply.poll() is None:
            apply.kill()
            apply.communicate()

    assert apply.returncode == 143
    assert time.monotonic() - stopped_at < 20
    assert (tmp_path / "calls").read_text().splitlines() == ["started"]
    assert versions(home, "models", "iris") == {"v0", "v1", "v2", "v3"}
    pushed = [r for r in read_records(tmp_path / "audit.jsonl") if r["event"].startswith("artifact.push")]
    assert [r["event"] for r in pushed] == ["artifact.push_intended", "artifact.push_failed"]
    assert "the run was asked to stop" in pushed[1]["error"]
    assert json.loads(stdout)["actions"][0]["outcome"] == "failed"
