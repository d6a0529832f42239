"""BentoML as the judge: after `retentiond apply`, BentoML's own API still works on the store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.bentoml
REPO = Path(__file__).resolve().parents[1]


def _environment(home: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RETENTIOND_")}
    environment.update(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="True", PYTHONPATH=str(REPO))
    return environment


def _judge(command: str, home: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.bentoml_judge", command, str(home)],
        capture_output=True, text=True, env=_environment(home), cwd=REPO, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _retentiond(home: Path, config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("retentiond", path=str(Path(sys.executable).parent)) or "retentiond"
    return subprocess.run(
        [executable, *arguments, "--config", str(config)],
        capture_output=True, text=True, env=_environment(home), timeout=120,
    )


@pytest.fixture(scope="module")
def bentoml_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("bentoml-judge")
    home = root / "bentoml"
    return home, _judge("build", home)


def test_apply_leaves_a_store_that_bentoml_lists_and_resolves(bentoml_store: tuple[Path, dict[str, Any]]) -> None:
    home, made = bentoml_store
    config = home.parent / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n[daemon]\naudit_log = "{home.parent / "audit.jsonl"}"\n'
        '[[retention]]\nname = "models"\nkinds = ["model"]\nkeep_last = 2\nkeep_labels = { retention = "keep" }\n'
        '[[retention]]\nname = "bentos"\nkinds = ["bento"]\nkeep_last = 1\n'
    )
    before = _judge("describe", home)
    plan_run = _retentiond(home, config, "plan", "--json")
    assert plan_run.returncode == 0, plan_run.stderr
    planned = {f"{a['name']}:{a['version']}" for a in json.loads(plan_run.stdout)["actions"]}
    # iris: 10 versions, keep 2 newest + the pinned + the referenced one; mnist: 5, keep 2.
    assert len(planned) == 6 + 3
    assert made["referenced"] not in planned and made["pinned"] not in planned

    apply_run = _retentiond(home, config, "apply", "--json")
    assert apply_run.returncode == 0, apply_run.stderr
    applied = json.loads(apply_run.stdout)["actions"]
    assert {f"{a['name']}:{a['version']}" for a in applied} == planned
    assert {a["outcome"] for a in applied} == {"ok"}

    after = _judge("describe", home)
    assert set(after["models"]) == set(before["models"]) - planned
    assert after["bentos"] == before["bentos"] == [made["bento"]]
    assert made["referenced"] in after["models"] and made["pinned"] in after["models"]
    for name, tag in after["latest"].items():
        remaining = [t for t in after["models"] if t.startswith(f"{name}:")]
        newest = max(remaining, key=lambda t: datetime.fromisoformat(after["created"][t]))
        assert tag == newest, f"bentoml.models.get({name!r}) is {tag}, newest remaining is {newest}"

    cli = subprocess.run(
        [str(Path(sys.executable).parent / "bentoml"), "models", "list", "-o", "json"],
        capture_output=True, text=True, env=_environment(home), timeout=120,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert {entry["tag"] for entry in json.loads(cli.stdout)} == set(after["models"])
