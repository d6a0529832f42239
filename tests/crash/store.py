"""The trial store: built once with the real ``bentoml`` package, copied per trial with its mtimes,
and read back as ``Pristine``, what every later state is compared with."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.crash.injector import REPO, child_environment

KINDS = {"model": ("models", "model.yaml"), "bento": ("bentos", "bento.yaml")}
STATE_DIR_NAME = ".retentiond"
SIZES = {
    # name -> (versions, spacing in hours); "full" has more than 64 deletions, so two intent batches.
    "full": {"iris": (48, 24), "mnist": (32, 3), "lonely": (1, 24)},
    "small": {"iris": (9, 24), "mnist": (6, 3), "lonely": (1, 24)},
}
KEEP_LAST = {"full": 5, "small": 2}
ORPHAN = "orphan"


def build_store(home: Path, size: str) -> dict[str, Any]:
    """Create the trial store through BentoML's own API (run with BENTOML_HOME=home); return what was made."""
    import bentoml
    from freezegun import freeze_time

    now = datetime.now().astimezone().replace(microsecond=0)
    generator = random.Random(7)
    made: dict[str, list[str]] = {}
    for name, (count, spacing_hours) in SIZES[size].items():
        made[name] = []
        for index in range(count, 0, -1):
            created_at = now - timedelta(hours=24 + spacing_hours * index)
            labels = {"owner": "ml"}
            if name == "iris" and index == count // 2:
                labels["retention"] = "keep"
            with freeze_time(created_at), bentoml.models.create(name, labels=labels) as model:
                _write_weights(Path(model.path), generator)
            version = str(model.tag.version)
            _age_tree(home / "models" / name / version, created_at)
            made[name].append(version)
    # A first save of a name that died after the copy into the store but before `latest` was written.
    with freeze_time(now - timedelta(days=3)), bentoml.models.create(ORPHAN, labels={"owner": "ml"}) as model:
        _write_weights(Path(model.path), generator)
    (home / "models" / ORPHAN / "latest").unlink()
    _age_tree(home / "models" / ORPHAN / str(model.tag.version), now - timedelta(days=3))
    made[ORPHAN] = [str(model.tag.version)]
    referenced = f"iris:{made['iris'][len(made['iris']) // 3]}"
    source = home.parent / "bento-src"
    source.mkdir(exist_ok=True)
    (source / "service.py").write_text(
        "import bentoml\n\n\n@bentoml.service\nclass Svc:\n"
        f"    model = bentoml.models.BentoModel({referenced!r})\n\n"
        "    @bentoml.api\n    def predict(self, x: int) -> int:\n        return x\n"
    )
    bentos = []
    for days in (3, 2):
        created_at = now - timedelta(days=days)
        with freeze_time(created_at):
            bento = bentoml.bentos.build("service:Svc", build_ctx=str(source))
        _age_tree(home / "bentos" / bento.tag.name / str(bento.tag.version), created_at)
        bentos.append(str(bento.tag))
    shutil.rmtree(source)
    return {"models": made, "referenced": referenced, "bentos": bentos}


def _write_weights(path: Path, generator: random.Random) -> None:
    (path / "weights.bin").write_bytes(generator.randbytes(generator.randint(512, 4096)))
    (path / "config.json").write_text(json.dumps({"layers": generator.randint(1, 64)}))
    (path / "tokenizer").mkdir()
    (path / "tokenizer" / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(generator.randint(10, 200))))
    (path / "tokenizer" / "merges.txt").write_bytes(generator.randbytes(300))


def _age_tree(path: Path, at: datetime) -> None:
    stamp = at.timestamp()
    for directory, _, files in os.walk(path):
        for file_name in files:
            os.utime(os.path.join(directory, file_name), (stamp, stamp))
        os.utime(directory, (stamp, stamp))


def build_pristine(root: Path, size: str) -> Path:
    """Build the store with real BentoML in a process of its own; return its home."""
    home = root / "bentoml"
    result = subprocess.run(
        [sys.executable, "-m", "tests.crash", "build", "--home", str(home), "--size", size],
        capture_output=True, text=True, env=child_environment(home), cwd=REPO, timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building the store with BentoML failed:\n{result.stderr[-3000:]}")
    return home


def copy_store(source: Path, destination: Path) -> None:
    """Copy a store with its mtimes (copy2 + copystat per directory), symlinks as symlinks."""
    shutil.copytree(source, destination, symlinks=True)



@dataclass(frozen=True)
class Version:
    created_at: datetime
    files: dict[str, tuple[int, str]]


@dataclass(frozen=True)
class Pristine:
    """The store before any trial: every version with its files, and every other path."""

    home: Path
    versions: dict[tuple[str, str, str], Version]
    other_paths: frozenset[str]
    with_latest: frozenset[tuple[str, str]]

    @classmethod
    def read(cls, home: Path) -> Pristine:
        import yaml

        versions: dict[tuple[str, str, str], Version] = {}
        for kind, (subdir, metadata_name) in KINDS.items():
            for directory in sorted((home / subdir).glob("*/*")):
                if directory.is_dir() and not directory.is_symlink():
                    document = yaml.safe_load((directory / metadata_name).read_text())
                    created_at = datetime.fromisoformat(str(document["creation_time"]))
                    key = (kind, directory.parent.name, directory.name)
                    versions[key] = Version(created_at, file_manifest(directory))
        inside = {_relative(home, home / KINDS[kind][0] / name / version) for kind, name, version in versions}
        others = {path for path in walk_paths(home) if not any(path == v or path.startswith(v + "/") for v in inside)}
        with_latest = {key[:2] for key in versions if (version_dir(home, key).parent / "latest").is_file()}
        return cls(home, versions, frozenset(others), frozenset(with_latest))

    def name_dir(self, kind: str, name: str) -> str:
        return f"{KINDS[kind][0]}/{name}"


def file_manifest(directory: Path) -> dict[str, tuple[int, str]]:
    """Return every regular file under ``directory`` (no symlinks followed) with its size and sha256."""
    manifest = {}
    for path in sorted(walk_paths(directory)):
        full = directory / path
        if full.is_file() and not full.is_symlink():
            content = full.read_bytes()
            manifest[path] = (len(content), hashlib.sha256(content).hexdigest())
    return manifest


def walk_paths(root: Path) -> Iterable[str]:
    """Yield every path below ``root``, relative to it, without following symlinks; skip our state dir."""
    pending = [root]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if directory == root and entry.name == STATE_DIR_NAME:
                    continue
                yield _relative(root, Path(entry.path))
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))


def _relative(root: Path, path: Path) -> str:
    return str(path.relative_to(root))



def version_dir(home: Path, key: tuple[str, str, str]) -> Path:
    kind, name, version = key
    return home / KINDS[kind][0] / name / version
