"""retentiond against what a user would do instead and against the filesystem's own limit, in one run.

    .venv/bin/python -m bench.run            # the full run (~15-20 minutes on 2 cores)
    .venv/bin/python -m bench.run --quick    # a tiny version of every row (smoke test, seconds)

Builds synthetic stores in a temporary directory (model.yaml exactly as BentoML writes
it), measures every row several times and prints ONE table (Markdown) of medians and
ratios against baselines measured in the same run. Page caches cannot be dropped here:
every store is warm in the page cache, for retentiond and the baselines alike.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench import daemon_checks, scenarios
from bench.report import Row, plan_rows, render
from bench.stores import copy_store, grow_store, keep_half_policy, new_home

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Profile:
    """How big each part of the run is."""

    versions_per_name: int
    plan_names: tuple[int, ...]  # store sizes, in names of ``versions_per_name`` versions, smallest first
    apply_names: int
    daemon_names: int
    many_files_names: int
    iris_versions: int
    runs: int
    apply_runs: int
    idle_seconds: float
    check_interval: int
    reaction_trials: int


FULL = Profile(100, (10, 100, 500, 1000), 500, 100, 100, 200, 3, 3, 60.0, 5, 3)
QUICK = Profile(10, (2, 10, 30), 10, 10, 3, 20, 1, 1, 1.0, 1, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny stores, one run each: a smoke test of every row")
    parser.add_argument("--runs", type=int, help="runs per measurement (default 3; 1 with --quick)")
    parser.add_argument("--workdir", type=Path, help="build the stores in a new directory under this one (default: /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the stores afterwards")
    arguments = parser.parse_args(argv)
    profile = QUICK if arguments.quick else FULL
    if arguments.runs:
        profile = Profile(**{**profile.__dict__, "runs": arguments.runs, "apply_runs": arguments.runs})
    if arguments.workdir is not None:
        arguments.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="retentiond-bench-", dir=arguments.workdir))
    started = time.monotonic()
    # As pip does at install time: the timed commands load bytecode instead of compiling the sources.
    for package in ("daemon", "policies"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    try:
        rows = run(profile, workdir, progress=lambda text: print(f"[{time.monotonic() - started:6.0f}s] {text}", file=sys.stderr))
    finally:
        if not arguments.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(machine_description())
    print(f"command: python -m bench.run{' --quick' if arguments.quick else ''}; runs per row: {profile.runs} "
          f"(apply: {profile.apply_runs}); stores warm in the page cache; total {time.monotonic() - started:.0f} s\n")
    print(render(rows))
    return 0


def run(profile: Profile, workdir: Path, progress: Callable[[str], None]) -> list[Row]:
    """Measure every row of the table; return them in table order."""
    now = datetime.now(timezone.utc)
    vpn = profile.versions_per_name
    policy = keep_half_policy(vpn)
    home = new_home(workdir / "store")
    figures = []
    apply_rows: list[Row] = []
    daemon_rows: list[Row] = []
    grown = 0
    for names in profile.plan_names:
        progress(f"building {names * vpn} versions")
        grow_store(home, (grown, names), versions_per_name=vpn, now=now)
        grown = names
        progress(f"plan on {names * vpn} versions")
        figures.append(scenarios.plan_figures(workdir / f"plan-{names}", home, names * vpn, profile.runs, policy,
                                              with_pyyaml=names == profile.daemon_names))
        if names == profile.daemon_names:
            progress("daemon idle and reaction")
            daemon_rows = _daemon_rows(profile, workdir, home)
        if names == profile.apply_names:
            progress(f"apply on {names * vpn} versions against rm -rf")
            applied, removed, deleted = scenarios.apply_half(workdir, home, profile.apply_runs, policy)
            apply_rows = [Row.compare(f"`apply` deleting half ({deleted:,} versions) | `rm -rf` of the same dirs in a copy",
                                      names * vpn, applied, removed, "≤ 1.3×", lambda ratio: ratio <= 1.3)]
    progress("evaluate only, largest store")
    evaluated = scenarios.evaluate_only(workdir / "evaluate", home, profile.runs, policy)
    shutil.rmtree(workdir / "store", ignore_errors=True)
    progress(f"20 files per version, {profile.many_files_names * vpn} versions")
    many = new_home(workdir / "many")
    grow_store(many, (0, profile.many_files_names), versions_per_name=vpn, files=20, now=now)
    many_figures = scenarios.plan_figures(workdir / "plan-many", many, profile.many_files_names * vpn, profile.runs, policy)
    shutil.rmtree(workdir / "many", ignore_errors=True)
    progress(f"BentoML's delete loop on {profile.iris_versions} versions")
    loop, ours, deletions = scenarios.bentoml_loop(workdir / "iris", profile.iris_versions, profile.runs, now)
    progress("empty store")
    empty_ours, empty_theirs = scenarios.empty_store(workdir, profile.runs)
    rows = plan_rows(figures, many_figures)
    rows.append(Row.single("evaluate only (`policies.evaluate`, in-process)", figures[-1].versions, evaluated, "≤ 1 s",
                           lambda seconds: seconds <= 1.0))
    rows += apply_rows
    rows.append(Row.compare(f"`apply`, {deletions} deletions | BentoML's loop `bentoml.models.delete` per version",
                            profile.iris_versions, ours, loop, "≥ 100× faster", lambda ratio: ratio <= 0.01, faster=True))
    rows.append(Row.compare("`plan` on an empty store | `bentoml models list`", 0, empty_ours, empty_theirs,
                            "faster", lambda ratio: ratio < 1.0, faster=True))
    return rows + daemon_rows


def _daemon_rows(profile: Profile, workdir: Path, home: Path) -> list[Row]:
    versions = profile.daemon_names * profile.versions_per_name
    idle_root = workdir / "idle"
    idle_root.mkdir()
    idle = daemon_checks.idle(idle_root, home, profile.idle_seconds, profile.check_interval)
    react_root = workdir / "react"
    react_root.mkdir()
    copy_store(home.parent, react_root / "store")
    reaction = daemon_checks.reaction(react_root, react_root / "store" / home.name, profile.check_interval, profile.reaction_trials)
    shutil.rmtree(react_root / "store", ignore_errors=True)
    return [Row.idle(idle, versions, profile.check_interval), Row.reaction(reaction, versions)]


def machine_description() -> str:
    """Cores, memory, the filesystem of the work directory, kernel and Python, for the record."""
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    filesystem = subprocess.run(["df", "-hT", tempfile.gettempdir()], capture_output=True, text=True).stdout.splitlines()[-1]
    return (f"machine: {os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB RAM; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}\nfilesystem: {' '.join(filesystem.split())}")


if __name__ == "__main__":
    sys.exit(main())
