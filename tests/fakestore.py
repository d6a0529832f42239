"""Build synthetic BentoML stores on disk, laid out exactly as BentoML 1.4 writes them."""

from __future__ import annotations

import os
import random
import string
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

_VERSION_ALPHABET = string.ascii_lowercase + "234567"


def random_version(generator: random.Random) -> str:
    """Return a BentoML-style automatic version: 16 chars of [a-z2-7]."""
    return "".join(generator.choice(_VERSION_ALPHABET) for _ in range(16))


def model_yaml(name: str, version: str, created_at: datetime, labels: Mapping[str, str] | None = None) -> str:
    """Return a model.yaml as BentoML 1.4.39 writes it."""
    document = {
        "name": name,
        "version": version,
        "module": "",
        "labels": dict(labels or {}),
        "options": {},
        "metadata": {"acc": 0.92},
        "context": {
            "framework_name": "",
            "framework_versions": {},
            "bentoml_version": "1.4.39",
            "python_version": "3.11.7",
        },
        "signatures": {},
        "api_version": "v1",
        "creation_time": created_at.astimezone(timezone.utc).isoformat(),
    }
    return yaml.safe_dump(document, sort_keys=False)


def bento_yaml(name: str, version: str, created_at: datetime, model_tags: Sequence[str], labels: Mapping[str, str] | None = None) -> str:
    """Return a bento.yaml referencing models the way BentoML 1.4 does (``services[].models[]``)."""
    document = {
        "service": "service:Svc",
        "name": name,
        "version": version,
        "bentoml_version": "1.4.39",
        "creation_time": created_at.astimezone(timezone.utc).isoformat(),
        "labels": dict(labels or {}),
        "models": [],
        "services": [
            {
                "name": "Svc",
                "service": "",
                "models": [
                    {"tag": tag, "module": "", "creation_time": created_at.isoformat(), "alias": None}
                    for tag in model_tags
                ],
                "dependencies": [],
                "config": {},
            }
        ],
        "envs": [],
        "schema": {},
        "apis": [],
        "docker": {},
        "python": {},
        "conda": {},
    }
    return yaml.safe_dump(document, sort_keys=False)


def _age(path: Path, created_at: datetime) -> None:
    stamp = created_at.timestamp()
    for directory, _, files in os.walk(path):
        for file_name in files:
            os.utime(os.path.join(directory, file_name), (stamp, stamp))
        os.utime(directory, (stamp, stamp))


def add_model(
    home: Path,
    name: str,
    version: str,
    created_at: datetime,
    *,
    labels: Mapping[str, str] | None = None,
    files: int = 2,
    file_bytes: int = 100,
    set_latest: bool = True,
    age_directory: bool = True,
) -> Path:
    """Write one model version (and, by default, point ``latest`` at it if it is the newest)."""
    version_dir = home / "models" / name / version
    version_dir.mkdir(parents=True, mode=0o700)
    (version_dir / "model.yaml").write_text(model_yaml(name, version, created_at, labels))
    for index in range(files):
        (version_dir / f"weights-{index}.bin").write_bytes(b"w" * file_bytes)
    if age_directory:
        _age(version_dir, created_at)
    if set_latest:
        _update_latest(home / "models" / name, version, created_at)
    return version_dir


def add_bento(
    home: Path,
    name: str,
    version: str,
    created_at: datetime,
    model_tags: Sequence[str],
    *,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Write one bento version that references the given model tags."""
    version_dir = home / "bentos" / name / version
    version_dir.mkdir(parents=True, mode=0o700)
    (version_dir / "bento.yaml").write_text(bento_yaml(name, version, created_at, model_tags, labels))
    (version_dir / "README.md").write_text("# bento\n")
    (version_dir / "src").mkdir()
    (version_dir / "src" / "service.py").write_text("print('hi')\n")
    _age(version_dir, created_at)
    _update_latest(home / "bentos" / name, version, created_at)
    return version_dir


def _update_latest(name_dir: Path, version: str, created_at: datetime) -> None:
    latest_file = name_dir / "latest"
    if latest_file.exists():
        current = latest_file.read_text()
        current_yaml = next(name_dir.glob(f"{current}/*.yaml"), None)
        if current_yaml is not None:
            current_created = datetime.fromisoformat(yaml.safe_load(current_yaml.read_text())["creation_time"])
            if current_created > created_at:
                return
    latest_file.write_text(version)


def make_home(root: Path) -> Path:
    """Create an empty BentoML home (models/ and bentos/) under ``root`` and return it."""
    home = root / "bentoml"
    (home / "models").mkdir(parents=True)
    (home / "bentos").mkdir()
    return home


def populate(
    home: Path,
    *,
    names: int,
    versions_per_name: int,
    now: datetime,
    seed: int = 1,
    spacing: timedelta = timedelta(hours=5),
    files: int = 2,
) -> list[tuple[str, str, datetime]]:
    """Fill a store with ``names × versions_per_name`` model versions; return (name, version, created_at)."""
    generator = random.Random(seed)
    made = []
    for name_index in range(names):
        name = f"model-{name_index:04d}"
        for step in range(versions_per_name):
            created_at = now - spacing * (step + 1) - timedelta(seconds=generator.randint(0, 3000))
            version = random_version(generator)
            add_model(home, name, version, created_at, files=files, set_latest=False)
            made.append((name, version, created_at))
        newest = max((entry for entry in made if entry[0] == name), key=lambda entry: entry[2])
        (home / "models" / name / "latest").write_text(newest[1])
    return made


def write_demo(root: Path) -> Path:
    """Create a demo store (3 names × 40 versions, hourly to daily) and a config for it; return the config."""
    home = root / "bentoml"
    config = root / "config.toml"
    if config.exists() and home.exists():
        return config  # made by an earlier call: use it as it is
    if home.exists():
        raise SystemExit(f"{home} already exists and is not a demo store; choose an empty directory")
    make_home(root)
    now = datetime.now(timezone.utc)
    populate(home, names=3, versions_per_name=40, now=now, spacing=timedelta(hours=9))
    config.write_text(
        f'[store]\nhome = "{home}"\n\n[daemon]\ntimezone = "Europe/Berlin"\n'
        f'state_dir = "{root / "state"}"\naudit_log = "{root / "audit.jsonl"}"\n\n'
        '[[retention]]\nname = "ci-models"\nkinds = ["model"]\nkeep_last = 3\nkeep_daily = 7\nkeep_weekly = 4\n'
    )
    return config


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m tests.fakestore DIR   (creates DIR/bentoml and DIR/config.toml)")
    print(write_demo(Path(sys.argv[1])))
