"""One worker's trials: kill a run in one of the modes, judge the store, recover, judge again."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.crash.checks import _artifact_key, _tag, check_store, read_audit
from tests.crash.injector import child_environment, start_injected
from tests.crash.judge import Judge
from tests.crash.store import KEEP_LAST, ORPHAN, SIZES, STATE_DIR_NAME, Pristine, copy_store, version_dir

VENV_BIN = Path(sys.executable).parent
JUDGE_MARK = "JUDGE "
# op: die before the Nth filesystem mutation; double: that, and the recovering run too; timer: SIGKILL
# after a random delay from start; started: after a random delay from run.started; rename: die before
# the Nth rename of a version out of models/ (N >= 2), so some but not all planned versions are gone.
MODES = ("op", "double", "timer", "started", "rename")
MODE_WEIGHTS = (35, 15, 20, 20, 10)



@dataclass
class Calibration:
    mutations: int
    run_seconds: float
    acting_seconds: float


@dataclass
class TrialResult:
    number: int
    mode: str
    parameter: float
    killed: bool
    vanished_after_kill: int
    trash_after_kill: bool
    failures: list[str] = field(default_factory=list)


class Bench:
    """Fixed paths for one worker: the trial store, its config, audit log and judge."""

    def __init__(self, work: Path, pristine: Pristine, size: str) -> None:
        self.work = work
        self.pristine = pristine
        self.trial_root = work / "trial"
        self.home = self.trial_root / "bentoml"
        self.audit_path = self.trial_root / "audit.jsonl"
        self.config = work / "config.toml"
        work.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f'[store]\nhome = "{self.home}"\n'
            f'[daemon]\nstate_dir = "{self.trial_root / "state"}"\naudit_log = "{self.audit_path}"\n'
            f'[[retention]]\nname = "models"\nkinds = ["model"]\nmatch = {json.dumps(sorted(SIZES[size]))}\n'
            f'keep_last = {KEEP_LAST[size]}\nkeep_labels = {{ retention = "keep" }}\n'
            f'[[retention]]\nname = "orphans"\nkinds = ["model"]\nmatch = ["{ORPHAN}"]\nkeep_newer_than = "2d"\n'
            'allow_remove_all = true\n'
            '[[retention]]\nname = "bentos"\nkinds = ["bento"]\nkeep_last = 1\n'
        )
        self.fresh_copy()
        self.judge = Judge(self.home)

    def fresh_copy(self) -> None:
        if self.trial_root.exists():
            shutil.rmtree(self.trial_root)
        self.trial_root.mkdir(parents=True)
        copy_store(self.pristine.home, self.home)

    def plan(self) -> set[tuple[str, str, str]]:
        result = subprocess.run(
            [str(VENV_BIN / "retentiond"), "plan", "--config", str(self.config), "--json"],
            capture_output=True, text=True, env=child_environment(self.home), timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"retentiond plan failed: {result.stderr[-2000:]}")
        return {(a["kind"], a["name"], a["version"]) for a in json.loads(result.stdout)["actions"]}

    def apply_command(self) -> list[str]:
        return ["apply", "--config", str(self.config), "--json"]

    def injected(self, at_op: int, count_file: Path | None = None) -> subprocess.Popen[bytes]:
        extra = {"CRASH_COUNT_FILE": str(count_file)} if count_file is not None else {}
        return start_injected(self.apply_command(), self.home, self.trial_root, at_op, **extra)

    def plain(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(VENV_BIN / "retentiond"), *self.apply_command()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_environment(self.home),
        )

    def calibrate(self) -> Calibration:
        """One full run with the fault injector counting: how many mutations, how long, how long acting."""
        self.fresh_copy()
        count_file = self.work / "mutations.count"
        started = time.monotonic()
        process = self.injected(0, count_file)
        acting_from = self._wait_for_run_started(process)
        code = process.wait(timeout=120)
        ended = time.monotonic()
        if code != 0:
            raise RuntimeError(f"the calibration run exited {code}")
        return Calibration(int(count_file.read_text()), ended - started, ended - (acting_from or started))

    def _wait_for_run_started(self, process: subprocess.Popen[bytes]) -> float | None:
        while process.poll() is None:
            try:
                if b'"run.started"' in self.audit_path.read_bytes():
                    return time.monotonic()
            except FileNotFoundError:
                pass
            time.sleep(0.0005)
        return None

    def run_trial(
        self, number: int, seed: int, calibration: Calibration, planned: set[tuple[str, str, str]], mode: str | None = None,
    ) -> TrialResult:
        """One trial: kill a run as ``mode`` says (by default one drawn from the seed), check, recover, check."""
        generator = random.Random(f"{seed}-{number}")
        drawn = generator.choices(MODES, MODE_WEIGHTS)[0]
        mode = mode or drawn
        self.fresh_copy()
        parameter, killed = self._kill_once(mode, generator, calibration, planned)
        if mode == "double":
            # Kill the recovering run too, wherever it is (trash purge, planning, deleting).
            self._kill_once("op", generator, calibration, planned)
        present = {key for key in self.pristine.versions if version_dir(self.home, key).is_dir()}
        trash = self.home / STATE_DIR_NAME / "trash"
        result = TrialResult(
            number, mode, parameter, killed, len(self.pristine.versions) - len(present),
            trash.is_dir() and any(trash.iterdir()),
        )
        after_kill = check_store(self.home, self.pristine, planned, self.audit_path, self.judge.describe())
        result.failures.extend(f"after the kill: {failure}" for failure in after_kill)
        result.failures.extend(f"after the recovery run: {failure}" for failure in self._recover_and_check(planned))
        if result.failures:
            keep = self.work.parent / "failed" / f"trial-{number}"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(self.trial_root, keep, symlinks=True)
        return result

    def _kill_once(
        self, mode: str, generator: random.Random, calibration: Calibration, planned: set[tuple[str, str, str]],
    ) -> tuple[float, bool]:
        if mode in ("op", "double"):
            at_op = generator.randint(1, calibration.mutations)
            return at_op, self.injected(at_op).wait(timeout=120) == -signal.SIGKILL
        if mode == "rename":
            # The first rename out of models/ is a version going to the trash (a latest is only repointed
            # after one), so dying before rename N >= 2 leaves at least one and at most N - 1 versions gone.
            models = sum(1 for key in planned if key[0] == "model")
            at_rename = generator.randint(2, max(2, models))
            process = start_injected(
                self.apply_command(), self.home, self.trial_root, at_rename,
                CRASH_AT_EVENT="os.rename", CRASH_MATCH=str(self.home / "models") + os.sep,
            )
            return at_rename, process.wait(timeout=120) == -signal.SIGKILL
        process = self.plain()
        if mode == "timer":
            delay = generator.uniform(0, calibration.run_seconds)
        else:
            delay = generator.uniform(0, calibration.acting_seconds * 1.1)
            if self._wait_for_run_started(process) is None:
                return delay, False
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        return delay, process.wait(timeout=120) == -signal.SIGKILL

    def _recover_and_check(self, planned: set[tuple[str, str, str]]) -> list[str]:
        result = subprocess.run(
            [str(VENV_BIN / "retentiond"), *self.apply_command()],
            capture_output=True, text=True, env=child_environment(self.home), timeout=120,
        )
        if result.returncode != 0:
            return [f"retentiond apply exited {result.returncode}: {result.stderr.strip()[-500:]}"]
        failures = check_store(self.home, self.pristine, planned, self.audit_path, self.judge.describe())
        present = {key for key in self.pristine.versions if version_dir(self.home, key).is_dir()}
        for key in sorted(planned & present):
            failures.append(f"{_tag(key)} was planned but is still there")
        trash = self.home / STATE_DIR_NAME / "trash"
        if trash.is_dir() and any(trash.iterdir()):
            failures.append(f"trash not recovered: {sorted(p.name for p in trash.iterdir())}")
        for kind, name in {key[:2] for key in self.pristine.versions}:
            name_dir = self.home / self.pristine.name_dir(kind, name)
            if name_dir.is_dir() and not any(entry.is_dir() for entry in name_dir.iterdir()):
                failures.append(f"{kind} {name}: its emptied name directory is still there")
        records, unreadable = read_audit(self.audit_path)
        failures.extend(f"unreadable audit line: {line!r}" for line in unreadable)
        deleted = Counter(_artifact_key(r) for r in records if r.get("event") == "artifact.deleted")
        failures.extend(f"{_tag(key)} deleted {count} times" for key, count in deleted.items() if count > 1)
        failures.extend(
            f"{_tag(_artifact_key(r))}: {r['event']} ({r.get('error')})"
            for r in records if r.get("event") == "artifact.delete_failed"
        )
        outcomes = Counter(action["outcome"] for action in json.loads(result.stdout)["actions"])
        if outcomes["failed"]:
            failures.append(f"the recovery run had failed actions: {dict(outcomes)}")
        verify = subprocess.run(
            [str(VENV_BIN / "retentiond"), "audit", "verify", "--config", str(self.config)],
            capture_output=True, text=True, env=child_environment(self.home), timeout=120,
        )
        if verify.returncode != 0:
            failures.append(f"`retentiond audit verify` exited {verify.returncode}: {verify.stderr.strip()[-300:]}")
        return failures

    def close(self) -> None:
        self.judge.close()

