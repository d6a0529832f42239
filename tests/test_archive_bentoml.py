"""store.archive_dir writes archives that BentoML's own `bentoml models import` takes back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bentoml
REPO = Path(__file__).resolve().parents[1]
BENTOML = Path(sys.executable).parent / "bentoml"

MAKE_MODELS = """
import os, sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
import bentoml
from freezegun import freeze_time
home = Path(os.environ["BENTOML_HOME"])
now = datetime.now(timezone.utc)
for day in (5, 4, 3):
    at = now - timedelta(days=day)
    with freeze_time(at), bentoml.models.create("iris", labels={"day": str(day)}) as model:
        (Path(model.path) / "weights.bin").write_bytes(bytes(range(256)) * day)
        (Path(model.path) / "sub").mkdir()
        (Path(model.path) / "sub" / "vocab.txt").write_text("a b c")
    stamp = at.timestamp()
    for directory, _, files in os.walk(home / "models" / "iris" / model.tag.version):
        for name in files:
            os.utime(os.path.join(directory, name), (stamp, stamp))
        os.utime(directory, (stamp, stamp))
    print(model.tag.version)
"""

DESCRIBE = """
import json, sys
from pathlib import Path
import bentoml
model = bentoml.models.get(sys.argv[1])
root = Path(model.path)
print(json.dumps({"tag": str(model.tag), "labels": model.info.labels,
                  "files": {str(p.relative_to(root)): p.read_bytes().hex()
                            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "model.yaml"}}))
"""


def run(command: list[str], home: Path) -> str:
    environment = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=180, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_archived_versions_import_back_with_bentoml(tmp_path: Path) -> None:
    home, fresh, archive = tmp_path / "bentoml", tmp_path / "other-home", tmp_path / "archive"
    versions = run([sys.executable, "-c", MAKE_MODELS], home).split()
    before = {version: json.loads(run([sys.executable, "-c", DESCRIBE, f"iris:{version}"], home)) for version in versions[:2]}
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\narchive_dir = "{archive}"\n'
        f'[daemon]\naudit_log = "{tmp_path / "audit.jsonl"}"\nstate_dir = "{tmp_path / "state"}"\n'
        '[[retention]]\nname = "ci"\nkeep_last = 1\n'
    )
    applied = json.loads(run([str(Path(sys.executable).parent / "retentiond"), "apply", "--config", str(config), "--json"], home))
    assert sorted(a["version"] for a in applied["actions"]) == sorted(versions[:2])
    assert sorted(p.name for p in archive.iterdir()) == sorted(f"iris-{v}.tar.gz" for v in versions[:2])

    for version in versions[:2]:
        run([str(BENTOML), "models", "import", str(archive / f"iris-{version}.tar.gz")], fresh)
        assert json.loads(run([sys.executable, "-c", DESCRIBE, f"iris:{version}"], fresh)) == before[version]
