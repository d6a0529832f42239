"""What the in-use check and ``keep_used_within`` cost, with a few hundred real processes running (issue 16).

    .venv/bin/python -m bench.inuse            # 300 processes, a 2k-version store, apply of 1k deletions
    .venv/bin/python -m bench.inuse --quick    # tiny, seconds (a smoke test runs this)

Spawns Python processes (each maps a file of its own; a few hold store versions: open, mapped or
standing in them), builds stores with ``bench.stores``, and times everything in this process:
every figure is the median of several runs next to a baseline measured in the same process on
the same tree (psutil for the /proc scan; the same command with the check switched off for plan
and apply). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

from bench.report import seconds
from bench.stores import copy_store, grow_store, keep_half_policy, new_home, write_config
from bench.timing import Measured, Sample, measure_call
from daemon import logs, observe, runner
from daemon.config import load_config
from daemon.inuse import InUseCheck, probe_files, version_identities
from daemon.inventory import scan_store
from daemon.procscan import scan_processes

SPAWN = """
import mmap, os, sys
with open(sys.argv[1], "rb") as handle:
    mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
if sys.argv[2] == "open":
    held = open(sys.argv[3], "rb")
elif sys.argv[2] == "mmap":
    with open(sys.argv[3], "rb") as handle:
        held = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
elif sys.argv[2] == "cwd":
    os.chdir(sys.argv[3])
print("ready", flush=True)
sys.stdin.read()
"""


@dataclass(frozen=True)
class Profile:
    processes: int
    holders: int
    names: int
    versions_per_name: int
    runs: int


FULL = Profile(processes=300, holders=12, names=20, versions_per_name=100, runs=5)
QUICK = Profile(processes=12, holders=3, names=2, versions_per_name=10, runs=2)


@dataclass(frozen=True)
class Row:
    what: str
    ours: Measured
    baseline: Measured
    baseline_is: str

    def render(self) -> str:
        ratio = self.ours.median / self.baseline.median if self.baseline.median else float("inf")
        cpu_ours, cpu_baseline = _cpu(self.ours), _cpu(self.baseline)
        cpu_ratio = cpu_ours / cpu_baseline if cpu_baseline else float("inf")
        return (f"| {self.what} | {seconds(self.ours.median)} | {seconds(self.baseline.median)} | {ratio:.2f}× "
                f"| {seconds(cpu_ours)} / {seconds(cpu_baseline)} = {cpu_ratio:.2f}× | {self.baseline_is} |")


def _cpu(measured: Measured) -> float:
    return statistics.median(sample.cpu_seconds for sample in measured.samples)


@contextmanager
def processes(count: int, holders: int, home: Path, scratch: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` Python processes, each mapping a file of its own; ``holders`` of them hold store versions."""
    versions = sorted((home / "models").glob("*/*/weights-0.bin"))
    children: list[subprocess.Popen[str]] = []
    try:
        for index in range(count):
            own = scratch / f"own-{index}.bin"
            own.write_bytes(b"x" * 4096)
            mode, target = "none", "-"
            if index < holders and versions:
                mode = ("open", "mmap", "cwd")[index % 3]
                weights = versions[index * len(versions) // holders]
                target = str(weights.parent if mode == "cwd" else weights)
            child = subprocess.Popen([sys.executable, "-S", "-c", SPAWN, str(own), mode, target],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            children.append(child)
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield children
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
        for child in children:
            child.wait(30)


def psutil_scan() -> None:
    """What the same question costs through psutil: cwd, open files and memory maps of every process."""
    for process in psutil.process_iter():
        try:
            process.cwd()
            process.open_files()
            process.memory_maps(grouped=False)
        except psutil.Error:
            continue


@contextmanager
def check_switched_off() -> Iterator[None]:
    """The code as it was before issue 16: no scan before deciding, no re-check before deleting."""
    real_observe, real_holder = observe.observe_usage, InUseCheck.holder
    observe.observe_usage = lambda inventory, home, policies: inventory  # type: ignore[assignment]
    InUseCheck.holder = lambda self, artifact, path: None  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        observe.observe_usage = real_observe  # type: ignore[assignment]
        InUseCheck.holder = real_holder  # type: ignore[method-assign]


def paired(
    ours: Callable[[], object], baseline: Callable[[], object], runs: int, before: Callable[[], None] | None = None
) -> tuple[Measured, Measured]:
    """Time ``ours`` and ``baseline`` (run with the check switched off) alternately, so that the machine's
    drift (it is shared) falls on both alike."""
    samples: tuple[list[Sample], list[Sample]] = ([], [])
    for _ in range(runs):
        samples[0].extend(measure_call(ours, 1, before=before).samples)
        with check_switched_off():
            samples[1].extend(measure_call(baseline, 1, before=before).samples)
    return Measured(tuple(samples[0])), Measured(tuple(samples[1]))


def scan_rows(home: Path, runs: int) -> list[Row]:
    identities = version_identities(scan_store(home).artifacts)
    root = str(home)
    full = measure_call(lambda: scan_processes(root, identities), runs)
    baseline = measure_call(psutil_scan, max(2, runs // 2))
    files = sorted(str(path.parent) for path in (home / "models").glob("*/*/model.yaml"))[:200]
    probes = measure_call(lambda: [probe_files(directory) for directory in files], runs)
    stats = measure_call(lambda: [os.stat(f"{directory}/weights-0.bin") for directory in files], runs)
    return [
        Row("/proc scan: fd, maps and cwd of every process, bind mounts by inode", full, baseline,
            "psutil: cwd, open_files, memory_maps"),
        Row("/proc scan without the by-inode fallback (paths under the store only)",
            measure_call(lambda: scan_processes(root), runs), full, "the full scan"),
        Row("/proc scan of working directories only (per batch under the lock)",
            measure_call(lambda: scan_processes(root, identities, working_directories_only=True), runs), full, "the full scan"),
        Row(f"lease probe of {len(files)} versions (3 files each)", probes, stats, "one stat per version"),
    ]


def plan_rows(root: Path, home: Path, profile: Profile) -> list[Row]:
    runs = profile.runs
    policy = keep_half_policy(profile.versions_per_name)
    plain = load_config(str(write_config(root, home, policy))).settings
    (root / "reading").mkdir()
    reading = load_config(str(write_config(root / "reading", home, policy + 'keep_used_within = "7d"\n'))).settings
    now = datetime.now(timezone.utc)
    for settings in (plain, reading):
        runner.make_plan(settings, now)  # warm the scan cache
    after, before = paired(lambda: runner.make_plan(plain, now), lambda: runner.make_plan(plain, now), runs)
    with_reads, _ = paired(lambda: runner.make_plan(reading, now), lambda: None, runs)
    after_again, _ = paired(lambda: runner.make_plan(plain, now), lambda: None, runs)
    return [
        Row("`plan` (in-process, scan cache warm): with the in-use scan", after, before, "the same, check switched off"),
        Row("`plan` with keep_used_within = 7d (cached versions walked again for atimes)", with_reads, after_again, "`plan` without it"),
    ]


def apply_rows(root: Path, source: Path, profile: Profile) -> list[Row]:
    runs = profile.runs
    work = root / "apply"
    work.mkdir()
    home = work / "bentoml"
    settings = load_config(str(write_config(work, home, keep_half_policy(profile.versions_per_name)))).settings

    def fresh_copy() -> None:
        copy_store(source, home)
        shutil.rmtree(work / "state", ignore_errors=True)

    after, before = paired(lambda: runner.apply_once(settings), lambda: runner.apply_once(settings), runs, before=fresh_copy)
    deletions = sum(1 for _ in source.glob("models/*/*/model.yaml")) // 2
    return [Row(f"`apply` of {deletions} deletions: scan before deciding + re-check each", after, before,
                "the same, check switched off")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inuse", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--workdir", type=Path, default=None)
    arguments = parser.parse_args(argv)
    profile = QUICK if arguments.quick else FULL
    logs.configure(logging.WARNING)  # the runs' own info lines would drown the table
    root = Path(tempfile.mkdtemp(prefix="retentiond-bench-inuse-", dir=arguments.workdir))
    try:
        home = new_home(root / "store")
        grow_store(home, (0, profile.names), versions_per_name=profile.versions_per_name, now=datetime.now(timezone.utc))
        scratch = root / "scratch"
        scratch.mkdir()
        with processes(profile.processes, profile.holders, home, scratch):
            count = sum(1 for entry in os.listdir("/proc") if entry.isdigit())
            rows = scan_rows(home, profile.runs)
            rows += plan_rows(root, home, profile)
            rows += apply_rows(root, home, profile)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    versions = profile.names * profile.versions_per_name
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{count} processes running, store of {versions} versions; medians of {profile.runs} runs")
    print("| what | with the check | baseline | ratio | CPU of this process, ratio | baseline is |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(row.render())
    print(f"(`python -m bench.inuse{' --quick' if arguments.quick else ''}`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
