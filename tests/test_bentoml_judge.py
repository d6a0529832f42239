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


def test_a_broken_bento_yaml_keeps_every_model_until_it_is_repaired(tmp_path: Path) -> None:
    # The reproduction on a store BentoML built: break the bento's bento.yaml, apply keep_last = 1.
    home = tmp_path / "bentoml"
    made = _judge("build", home)
    before = _judge("describe", home)
    assert before["bento_models"] == {made["bento"]: {"resolved": [made["referenced"]], "missing": []}}
    name, version = made["bento"].split(":")
    bento_yaml = home / "bentos" / name / version / "bento.yaml"
    healthy = bento_yaml.read_bytes()
    with open(bento_yaml, "ab") as handle:
        handle.write(b"\n\tbroken: [\n")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
        '[[retention]]\nname = "models"\nkinds = ["model"]\nkeep_last = 1\n'
        '[[disk]]\nname = "squeeze"\nkinds = ["model"]\nmax_store_size = "1B"\n'
    )
    for command in ("plan", "apply"):
        run = _retentiond(home, config, command, "--json")
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        assert report["actions"] == []
        assert any(w.startswith(f"model deletions blocked: references of bento {made['bento']} unknown (malformed bento.yaml")
                   for w in report["warnings"]), report["warnings"]
    bento_yaml.write_bytes(healthy)
    after = _judge("describe", home)
    assert after["models"] == before["models"]
    assert after["bento_models"] == before["bento_models"]

    # Repaired, the bento protects its model again and the rest may go: BentoML still loads the bento's model.
    config.write_text(config.read_text().split("[[disk]]")[0])
    run = _retentiond(home, config, "apply", "--json")
    assert run.returncode == 0, run.stderr
    assert {a["outcome"] for a in json.loads(run.stdout)["actions"]} == {"ok"}
    final = _judge("describe", home)
    assert final["bento_models"] == before["bento_models"]
    assert set(final["models"]) == {made["referenced"], *final["latest"].values()}
