"""The benchmark's measurements, each against the baseline it is judged by, measured in the same run."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

from bench.stores import add_iris_store, copy_store, new_home, write_config
from bench.timing import PYTHON, Measured, du, environment, measure, measure_call, retentiond
from daemon.config import load_config
from daemon.inventory import scan_store
from daemon.metadata_reader import Unsupported
from policies import evaluate

BENTOML_DELETE_LOOP = (
    "import bentoml\n"
    "for m in bentoml.models.list('iris')[5:]:\n"
    "    bentoml.models.delete(m.tag)\n"
)


@dataclass(frozen=True)
class PlanFigures:
    """``retentiond plan`` on one store: without and with the scan cache, the scan alone, and ``du -sb``."""

    versions: int
    du: Measured
    first_plan: Measured
    next_plan: Measured
    first_scan: Measured
    next_scan: Measured
    pyyaml_scan: Measured | None = None


def clear_scan_cache(state_dir: Path) -> None:
    """Remove the scan cache files so the next run starts cold."""
    for cache_file in state_dir.glob("scancache-*"):
        cache_file.unlink()


def plan_figures(root: Path, home: Path, versions: int, runs: int, policy: str, *, with_pyyaml: bool = False) -> PlanFigures:
    """Measure ``retentiond plan --json`` on ``home`` cold (no scan cache) and warm, and ``du -sb`` of it."""
    root.mkdir(parents=True, exist_ok=True)
    config = write_config(root, home, policy)
    state_dir = root / "state"
    plan = retentiond("plan", "--config", str(config), "--json")
    baseline = du(home, runs)
    first_plan = measure(plan, runs, before=lambda: clear_scan_cache(state_dir))
    next_plan = measure(plan, runs)  # the last cold run left the cache warm
    scratch = root / "scan-only"
    first_scan = measure_call(lambda: scan_store(home, scratch), runs, before=lambda: shutil.rmtree(scratch, ignore_errors=True))
    next_scan = measure_call(lambda: scan_store(home, scratch), runs)
    pyyaml_scan = None
    if with_pyyaml:
        # What the scan cost before the fast reader: every metadata file through PyYAML.
        with mock.patch("daemon.metadata.read_fields", side_effect=Unsupported):
            pyyaml_scan = measure_call(lambda: scan_store(home), runs)
    return PlanFigures(versions, baseline, first_plan, next_plan, first_scan, next_scan, pyyaml_scan)


def evaluate_only(root: Path, home: Path, runs: int, policy: str) -> Measured:
    """Time ``policies.evaluate`` alone on the store's inventory (already scanned)."""
    root.mkdir(parents=True, exist_ok=True)
    config = write_config(root, home, policy)
    settings = load_config(str(config)).settings
    inventory = scan_store(home, root / "state")
    now = datetime.now(timezone.utc)
    return measure_call(lambda: evaluate(inventory, settings.policies, now, zone=settings.daemon.zone), runs)


def planned_deletions(config: Path) -> list[str]:
    """Return the store-relative paths ``retentiond plan`` would delete."""
    output = subprocess.run(retentiond("plan", "--config", str(config), "--json"), check=True, capture_output=True,
                            env=environment()).stdout
    return [f"models/{action['name']}/{action['version']}" for action in json.loads(output)["actions"]]


def apply_half(root: Path, home: Path, runs: int, policy: str) -> tuple[Measured, Measured, int]:
    """``retentiond apply`` deleting half of a copy of ``home`` (scan cache warm, as for a store it has seen)
    against ``rm -rf`` of the same directories in another copy. Return both and the number deleted."""
    work = root / "apply"
    work.mkdir(parents=True, exist_ok=True)
    copy = work / "store"
    config = write_config(work, copy / home.name, policy)
    doomed = planned_deletions(write_config(root, home, policy))

    def fresh_copy_with_warm_cache() -> None:
        copy_store(home.parent, copy)
        (work / "audit.jsonl").unlink(missing_ok=True)
        subprocess.run(retentiond("plan", "--config", str(config), "--json"), check=True, stdout=subprocess.DEVNULL,
                       env=environment())

    applied = measure(retentiond("apply", "--config", str(config), "--json"), runs, before=fresh_copy_with_warm_cache)
    remaining = sum(1 for _ in (copy / home.name / "models").glob("*/*/model.yaml"))
    if remaining != _count_versions(home) - len(doomed):
        raise RuntimeError(f"apply left {remaining} versions, expected {_count_versions(home) - len(doomed)}")
    listing = work / "doomed.list"
    listing.write_bytes(b"".join(str(copy / home.name / path).encode() + b"\0" for path in doomed))
    removed = measure(["sh", "-c", f"xargs -0 rm -rf < '{listing}'"], runs, before=lambda: copy_store(home.parent, copy))
    shutil.rmtree(copy, ignore_errors=True)
    return applied, removed, len(doomed)


def _count_versions(home: Path) -> int:
    return sum(1 for _ in (home / "models").glob("*/*/model.yaml"))


def bentoml_loop(root: Path, versions: int, runs: int, now: datetime) -> tuple[Measured, Measured, int]:
    """BentoML's own delete loop (REFERENCE.md §1) against ``retentiond apply`` doing as many deletions,
    each on a fresh copy of a one-name store of ``versions`` versions. Whole processes, start-up included."""
    pristine = root / "iris-pristine"
    home = add_iris_store(pristine, versions, now)
    copy = root / "iris-run"
    copy_home = copy / home.name
    (root / "iris-config").mkdir(parents=True, exist_ok=True)
    config = write_config(root / "iris-config", copy_home, '[[retention]]\nname = "iris"\nkeep_last = 5\n')

    def fresh() -> None:
        copy_store(pristine, copy)
        shutil.rmtree(root / "iris-config" / "state", ignore_errors=True)

    loop = measure([PYTHON, "-c", BENTOML_DELETE_LOOP], runs, before=fresh, env={"BENTOML_HOME": str(copy_home)})
    ours = measure(retentiond("apply", "--config", str(config), "--json"), runs, before=fresh)
    return loop, ours, versions - 5


def empty_store(root: Path, runs: int) -> tuple[Measured, Measured]:
    """``retentiond plan`` against ``bentoml models list`` on an empty store."""
    home = new_home(root / "empty")
    config = write_config(root / "empty", home, '[[retention]]\nname = "ci"\nkeep_last = 5\n')
    ours = measure(retentiond("plan", "--config", str(config), "--json"), runs)
    theirs = measure([str(Path(PYTHON).with_name("bentoml")), "models", "list"], runs, env={"BENTOML_HOME": str(home)})
    return ours, theirs
