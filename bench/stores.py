"""Synthetic BentoML stores for the benchmark, written by ``tests.fakestore`` (model.yaml exactly as BentoML 1.4 writes it)."""

from __future__ import annotations

import multiprocessing
import random
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.fakestore import add_model, make_home, random_version

VERSIONS_PER_NAME = 100
SPACING = timedelta(hours=5)


def _write_names(task: tuple[Path, int, int, int, int, float]) -> None:
    home, first, last, versions_per_name, files, now_stamp = task
    now = datetime.fromtimestamp(now_stamp, timezone.utc)
    for name_index in range(first, last):
        generator = random.Random(name_index)
        name = f"model-{name_index:05d}"
        newest: tuple[datetime, str] | None = None
        for step in range(versions_per_name):
            created_at = now - SPACING * (step + 1) - timedelta(seconds=generator.randint(0, 3000))
            version = random_version(generator)
            add_model(home, name, version, created_at, files=files, set_latest=False)
            if newest is None or created_at > newest[0]:
                newest = (created_at, version)
        assert newest is not None
        (home / "models" / name / "latest").write_text(newest[1])


def grow_store(home: Path, names: tuple[int, int], *, files: int = 2, versions_per_name: int = VERSIONS_PER_NAME,
               now: datetime, workers: int = 2) -> None:
    """Add the names ``model-<first>`` .. ``model-<last - 1>``, each with ``versions_per_name`` versions,
    spaced 5 hours apart and aged (mtimes in the past, as a store that has been used for a while)."""
    first, last = names
    step = max(1, (last - first + workers * 4 - 1) // (workers * 4))
    tasks = [(home, start, min(start + step, last), versions_per_name, files, now.timestamp()) for start in range(first, last, step)]
    if workers <= 1 or len(tasks) == 1:
        for task in tasks:
            _write_names(task)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_write_names, tasks)


def new_home(root: Path) -> Path:
    """Create an empty BentoML home under ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    return make_home(root)


def write_config(root: Path, home: Path, policies: str) -> Path:
    """Write ``root/config.toml`` for the store with the given policy TOML; state and audit under ``root``."""
    config = root / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n\n[daemon]\ntimezone = "UTC"\nstate_dir = "{root / "state"}"\n'
        f'audit_log = "{root / "audit.jsonl"}"\n\n{policies}'
    )
    return config


def keep_half_policy(versions_per_name: int = VERSIONS_PER_NAME) -> str:
    """A retention policy that keeps the newest half of every name (deletes the other half)."""
    return f'[[retention]]\nname = "ci-models"\nkinds = ["model"]\nkeep_last = {versions_per_name // 2}\n'


def copy_store(source: Path, destination: Path) -> None:
    """Copy a store with ``cp -a`` (timestamps kept, fresh inodes), replacing ``destination``."""
    if destination.exists():
        shutil.rmtree(destination)
    subprocess.run(["cp", "-a", str(source), str(destination)], check=True)


def add_iris_store(root: Path, versions: int, now: datetime) -> Path:
    """A store with one model name, ``iris``, and ``versions`` versions: BentoML's own delete loop's case."""
    home = new_home(root)
    generator = random.Random(7)
    made = [random_version(generator) for _ in range(versions)]
    for step, version in enumerate(made):
        add_model(home, "iris", version, now - SPACING * (step + 1), set_latest=False)
    (home / "models" / "iris" / "latest").write_text(made[0])  # the first one made is the newest
    return home
