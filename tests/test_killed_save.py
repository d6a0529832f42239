"""A real BentoML save killed mid-copy leaves a version directory without model.yaml, which breaks
BentoML's own listing; with store.collect_incomplete_after, `retentiond apply` collects it once it is
old enough and BentoML lists the store again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.crash.injector import child_environment
from tests.fakestore import add_model, make_home

REPO = Path(__file__).resolve().parents[1]
NOW = datetime.now(timezone.utc).replace(microsecond=0)
BENTOML = str(Path(sys.executable).parent / "bentoml")

# `bentoml.models.create` writing a big weights file; BentoML's Model.save then copies the model into the
# store with shutil.copytree, in directory order. Here the copy takes the unlucky order (weights first,
# model.yaml last) and goes a MiB at a time, so that the test can SIGKILL it mid-copy.
KILLED_SAVE = r"""
import os, shutil, sys, time
import bentoml

size = int(sys.argv[1])
real_copytree = shutil.copytree

def weights_first_copytree(source, destination, **options):
    os.makedirs(destination, exist_ok=True)
    for name in sorted(os.listdir(source), key=lambda name: name == "model.yaml"):
        path = os.path.join(source, name)
        if os.path.isdir(path):
            real_copytree(path, os.path.join(destination, name), **options)
            continue
        with open(path, "rb") as source_file, open(os.path.join(destination, name), "wb") as copy:
            while chunk := source_file.read(1 << 20):
                copy.write(chunk)
                copy.flush()
                print("COPIED", name, copy.tell(), flush=True)
                time.sleep(0.2)
    return destination

shutil.copytree = weights_first_copytree
with bentoml.models.create("iris", labels={"owner": "ml"}) as model:
    with open(os.path.join(model.path, "weights.bin"), "wb") as handle:
        handle.write(os.urandom(size))
    print("SAVING", model.tag.version, flush=True)
print("SAVED", flush=True)
"""


def kill_mid_save(home: Path) -> str:
    """Run a real BentoML save of a 16 MiB model and SIGKILL it once 2 MiB of weights are in the store."""
    save = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(16 << 20)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_environment(home), cwd=REPO)
    try:
        assert save.stdout is not None
        version = None
        for line in save.stdout:
            words = line.split()
            if words[:1] == ["SAVING"]:
                version = words[1]
            if words[:2] == ["COPIED", "weights.bin"] and int(words[2]) >= 2 << 20:
                break
        else:
            raise AssertionError(f"the save never got going: {save.stderr.read() if save.stderr else ''}")
        save.send_signal(signal.SIGKILL)
        assert save.wait(timeout=30) == -signal.SIGKILL
    finally:
        if save.poll() is None:
            save.kill()
        save.communicate()
    assert version is not None
    return version


def age(path: Path, days: float) -> None:
    stamp = (NOW - timedelta(days=days)).timestamp()
    for directory, _, files in os.walk(path):
        for name in files:
            os.utime(os.path.join(directory, name), (stamp, stamp))
        os.utime(directory, (stamp, stamp))


def bentoml_lists(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BENTOML, "models", "list", "-o", "json"], capture_output=True, text=True,
                          env=child_environment(home), cwd=REPO, timeout=120)


def retentiond(config: Path, *arguments: str) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run([sys.executable, "-m", "daemon", *arguments, "--config", str(config), "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    return result.returncode, json.loads(result.stdout), result.stderr


@pytest.mark.bentoml
def test_a_killed_real_save_is_collected_once_old_and_bentoml_lists_the_store_again(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    add_model(home, "iris", "v1", NOW - timedelta(days=2))
    old_save, young_save = kill_mid_save(home), kill_mid_save(home)
    for version in (old_save, young_save):
        saved = home / "models" / "iris" / version
        assert sorted(path.name for path in saved.iterdir()) == ["weights.bin"]
        assert 0 < (saved / "weights.bin").stat().st_size < 16 << 20
    assert bentoml_lists(home).returncode != 0, "BentoML lists a store with a killed save: the premise is wrong"
    age(home / "models" / "iris" / old_save, days=8)
    age(home / "models" / "iris" / young_save, days=5)
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nhome = "{home}"\ncollect_incomplete_after = "7d"\n'
                      f'[daemon]\nstate_dir = "{tmp_path / "state"}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n')

    code, planned, _ = retentiond(config, "plan")
    assert code == 0
    [action] = planned["actions"]
    assert (action["action"], action["kind"], action["name"], action["version"]) == ("delete", "model", "iris", old_save)
    assert action["policy"] == "store.collect_incomplete_after"
    assert action["reasons"][0].startswith("incomplete save: no model.yaml, last modified ")
    [young_warning] = [w for w in planned["warnings"] if young_save in w]
    assert "incomplete save: no model.yaml" in young_warning and "collected if still unchanged at" in young_warning

    code, applied, stderr = retentiond(config, "apply")
    assert code == 0, stderr
    assert [(a["version"], a["outcome"]) for a in applied["actions"]] == [(old_save, "ok")]
    assert sorted(path.name for path in (home / "models" / "iris").iterdir()) == sorted(["latest", "v1", young_save])
    assert bentoml_lists(home).returncode != 0  # the younger killed save is still there, on purpose

    age(home / "models" / "iris" / young_save, days=8)
    code, applied, stderr = retentiond(config, "apply")
    assert code == 0, stderr
    assert [(a["version"], a["outcome"]) for a in applied["actions"]] == [(young_save, "ok")]
    listed = bentoml_lists(home)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert [model["tag"] for model in json.loads(listed.stdout)] == ["iris:v1"]
    assert (home / "models" / "iris" / "latest").read_text() == "v1"
