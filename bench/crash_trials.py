"""Crash safety by fault injection: SIGKILL `retentiond apply` at random moments, then judge the store.

A store is built once with the real ``bentoml`` package (models with sub-directories,
a pinned model, a bento that references a model, an older bento, and a name whose
only save died before BentoML wrote ``latest``, which the run deletes whole, name
directory included), then copied per trial with its mtimes. Each trial kills
``retentiond apply`` in one of four ways:

    op        an audit hook in the apply process SIGKILLs it just before its k-th
              filesystem mutation (open for writing, mkdir, rename/replace, unlink,
              rmdir, chmod, flock), k uniform over all mutations of a full run
    double    like ``op``, then the recovering run is killed the same way too
    timer     SIGKILL from outside after a delay uniform over a whole run
    started   SIGKILL from outside after a delay uniform over the acting phase,
              counted from the moment ``run.started`` is in the audit log

After the kill, and again after the next normal run, the store is judged:
BentoML (Python API and its own CLI, in a long-lived judge process) lists models
and bentos and resolves every name; every ``latest`` names the newest remaining
version by creation_time; every version is whole (same files, sizes and bytes) or
absent; only planned versions are gone and each has a fsynced audit intent; no new
entry appears in the store; the store is not left locked. After the recovery run
the trash is empty, exactly the plan is gone, each version was deleted at most once,
nothing failed, and `retentiond audit verify` finds the hash chain intact.

    python -m bench.crash_trials --trials 200            # the full figure for RELIABILITY.md
    python -m bench.crash_trials --trials 20 --size small --workers 1
    python -m bench.crash_trials --only 17 --seed 1      # replay one trial (same kill point while the
                                                         # code makes the same number of mutations)

Prints ``trials: N  failures: F`` and exits 1 when F > 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
KINDS = {"model": ("models", "model.yaml"), "bento": ("bentos", "bento.yaml")}
STATE_DIR_NAME = ".retentiond"
JUDGE_MARK = "JUDGE "
# op: die before the Nth filesystem mutation; double: that, and the recovering run too; timer: SIGKILL
# after a random delay from start; started: after a random delay from run.started; rename: die before
# the Nth rename of a version out of models/ (N >= 2), so some but not all planned versions are gone.
MODES = ("op", "double", "timer", "started", "rename")
MODE_WEIGHTS = (35, 15, 20, 20, 10)
SIZES = {
    # name -> (versions, spacing in hours); "full" has more than 64 deletions, so two intent batches.
    "full": {"iris": (48, 24), "mnist": (32, 3), "lonely": (1, 24)},
    "small": {"iris": (9, 24), "mnist": (6, 3), "lonely": (1, 24)},
}
KEEP_LAST = {"full": 5, "small": 2}
ORPHAN = "orphan"

# The program that runs `retentiond apply` in-process with a fault injector. An audit hook sees
# every filesystem mutation just before it happens; at the CRASH_AT_OP-th one the process SIGKILLs
# (or, with CRASH_SIGNAL=STOP, freezes) itself. Counting starts at the first mutation under
# CRASH_ROOT, so interpreter start-up (bytecode caches) does not count; with CRASH_AT_EVENT (e.g.
# os.rename) only that event counts, with CRASH_MATCH only events on a path containing it. With
# CRASH_AT_OP=0 it only counts and writes the total to CRASH_COUNT_FILE.
KILLER = r"""
import os, signal, sys
_target = int(os.environ.get("CRASH_AT_OP", "0"))
_root = os.environ["CRASH_ROOT"]
_stop = os.environ.get("CRASH_SIGNAL") == "STOP"
_count_file = os.environ.get("CRASH_COUNT_FILE")
_only_event = os.environ.get("CRASH_AT_EVENT")
_match = os.environ.get("CRASH_MATCH")
_writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_mutating = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.chmod", "os.utime", "os.truncate",
             "os.symlink", "os.link", "shutil.rmtree", "fcntl.flock"}
_state = {"armed": False, "count": 0}

def _touches(args, part):
    for value in args[:2]:
        try:
            if part in os.fsdecode(value):
                return True
        except TypeError:
            pass
    return False

def _hook(event, args):
    if event == "open":
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        if not flags & _writes:
            return
    elif event not in _mutating:
        return
    if not _state["armed"]:
        if not _touches(args, _root):
            return
        _state["armed"] = True
    if (_only_event and event != _only_event) or (_match and not _touches(args, _match)):
        return
    _state["count"] += 1
    if _state["count"] == _target:
        os.kill(os.getpid(), signal.SIGSTOP if _stop else signal.SIGKILL)

sys.addaudithook(_hook)
from daemon.cli import main
_code = main(sys.argv[1:])
_counted = _state["count"]
_target = -1
if _count_file:
    with open(_count_file, "w") as _handle:
        _handle.write(str(_counted))
sys.exit(_code)
"""


# ---------------------------------------------------------------- building the store with BentoML


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
        [sys.executable, "-m", "bench.crash_trials", "build", "--home", str(home), "--size", size],
        capture_output=True, text=True, env=child_environment(home), cwd=REPO, timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building the store with BentoML failed:\n{result.stderr[-3000:]}")
    return home


def child_environment(home: Path, **extra: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RETENTIOND_")}
    environment.pop("NOTIFY_SOCKET", None)
    environment.update(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="True", PYTHONPATH=str(REPO), **extra)
    return environment


def start_injected(arguments: list[str], home: Path, root: Path, at_op: int, **extra: str) -> subprocess.Popen[bytes]:
    """Start ``retentiond ARGUMENTS`` with the fault injector: it dies (or freezes) before mutation ``at_op``."""
    environment = child_environment(home, CRASH_AT_OP=str(at_op), CRASH_ROOT=str(root), **extra)
    return subprocess.Popen(
        [sys.executable, "-c", KILLER, *arguments],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment, cwd=REPO,
    )


def copy_store(source: Path, destination: Path) -> None:
    """Copy a store with its mtimes (copy2 + copystat per directory), symlinks as symlinks."""
    shutil.copytree(source, destination, symlinks=True)


# ---------------------------------------------------------------- what the store must look like


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
            for version_dir in sorted((home / subdir).glob("*/*")):
                if version_dir.is_dir() and not version_dir.is_symlink():
                    document = yaml.safe_load((version_dir / metadata_name).read_text())
                    created_at = datetime.fromisoformat(str(document["creation_time"]))
                    key = (kind, version_dir.parent.name, version_dir.name)
                    versions[key] = Version(created_at, file_manifest(version_dir))
        inside = {_relative(home, home / KINDS[kind][0] / name / version) for kind, name, version in versions}
        others = {path for path in walk_paths(home) if not any(path == v or path.startswith(v + "/") for v in inside)}
        with_latest = {key[:2] for key in versions if (_version_dir(home, key).parent / "latest").is_file()}
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


def read_audit(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the audit records and every non-empty line that is not a JSON object."""
    if not path.exists():
        return [], []
    records, unreadable = [], []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            unreadable.append(line.decode("utf-8", "replace")[:200])
            continue
        records.append(record) if isinstance(record, dict) else unreadable.append(line.decode()[:200])
    return records, unreadable


def _artifact_key(record: dict[str, Any]) -> tuple[str, str, str]:
    return (str(record.get("kind")), str(record.get("name")), str(record.get("version")))


def check_store(
    home: Path, pristine: Pristine, planned: set[tuple[str, str, str]], audit_path: Path, judged: dict[str, Any]
) -> list[str]:
    """Given a store after a kill or a run, return every way it breaks the crash-safety promises."""
    failures: list[str] = []
    present = {key for key in pristine.versions if _version_dir(home, key).is_dir()}
    vanished = set(pristine.versions) - present
    for key in sorted(vanished - planned):
        failures.append(f"{_tag(key)} is gone but was not planned for deletion")
    records, _ = read_audit(audit_path)
    intended = {_artifact_key(r) for r in records if r.get("event") == "artifact.delete_intended"}
    for key in sorted(vanished - intended):
        failures.append(f"{_tag(key)} is gone without an audit intent")
    for key in sorted(present):
        manifest = file_manifest(_version_dir(home, key))
        if manifest != pristine.versions[key].files:
            failures.append(f"{_tag(key)} is not whole: {_manifest_difference(pristine.versions[key].files, manifest)}")
    failures.extend(_check_latest(home, pristine, present))
    now_paths = set(walk_paths(home))
    inside_versions = {_relative(home, _version_dir(home, key)) for key in pristine.versions}
    for path in sorted(now_paths - pristine.other_paths):
        if not any(path == v or path.startswith(v + "/") for v in inside_versions):
            failures.append(f"new entry in the store: {path}")
    emptied = {pristine.name_dir(kind, name) for kind, name, _ in pristine.versions
               if not any(key[:2] == (kind, name) for key in present)}
    for path in sorted(pristine.other_paths - now_paths):
        if path not in emptied and not any(path.startswith(name_dir + "/") for name_dir in emptied):
            failures.append(f"{path} (not a planned version) is gone")
    failures.extend(_check_judgement(judged, present))
    return failures


def _version_dir(home: Path, key: tuple[str, str, str]) -> Path:
    kind, name, version = key
    return home / KINDS[kind][0] / name / version


def _tag(key: tuple[str, str, str]) -> str:
    return f"{key[0]} {key[1]}:{key[2]}"


def _manifest_difference(expected: dict[str, tuple[int, str]], actual: dict[str, tuple[int, str]]) -> str:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(path for path in set(expected) & set(actual) if expected[path] != actual[path])
    return f"missing {missing}, extra {extra}, changed {changed}"


def _check_latest(home: Path, pristine: Pristine, present: set[tuple[str, str, str]]) -> list[str]:
    # In a store BentoML made, `latest` names the newest version; the planner never deletes what
    # `latest` names, so no run of this scenario has to repair it: it must still name the newest.
    # A name whose save died before `latest` was written has none, and must not get one.
    failures = []
    names = {(kind, name) for kind, name, _ in present}
    for kind, name in sorted(names - pristine.with_latest):
        if (home / KINDS[kind][0] / name / "latest").exists():
            failures.append(f"{kind} {name}: has a latest file it did not have")
    for kind, name in sorted(names & pristine.with_latest):
        latest_path = home / KINDS[kind][0] / name / "latest"
        if latest_path.is_symlink() or not latest_path.is_file():
            failures.append(f"{kind} {name}: latest is missing or not a plain file")
            continue
        named = latest_path.read_text().strip()
        remaining = [key for key in present if key[:2] == (kind, name)]
        newest = max(remaining, key=lambda key: pristine.versions[key].created_at)
        if named != newest[2]:
            failures.append(f"{kind} {name}: latest names {named!r}, newest remaining is {newest[2]!r}")
    return failures


def _check_judgement(judged: dict[str, Any], present: set[tuple[str, str, str]]) -> list[str]:
    if "error" in judged:
        return [f"BentoML cannot read the store: {judged['error']}"]
    failures = []
    expected_models = {f"{name}:{version}" for kind, name, version in present if kind == "model"}
    expected_bentos = {f"{name}:{version}" for kind, name, version in present if kind == "bento"}
    for what, seen, expected in (
        ("bentoml.models.list()", judged["models"], expected_models),
        ("bentoml.list()", judged["bentos"], expected_bentos),
        ("`bentoml models list -o json`", judged["cli_models"], expected_models),
        ("`bentoml list -o json`", judged["cli_bentos"], expected_bentos),
    ):
        if set(seen) != expected:
            failures.append(f"{what} shows {sorted(set(seen) ^ expected)} differently from the store")
    return failures


# ---------------------------------------------------------------- the BentoML judge process


def judge_main() -> None:
    """Answer each ``describe`` line on stdin with one JSON line: what BentoML lists and resolves."""
    import bentoml
    from bentoml_cli.cli import cli
    from click.testing import CliRunner

    runner = CliRunner()
    for line in sys.stdin:
        if line.strip() != "describe":
            continue
        try:
            answer = _describe(bentoml, cli, runner)
        except Exception as error:  # any exception is the verdict: BentoML cannot read this store
            answer = {"error": f"{type(error).__name__}: {error}"[:500]}
        sys.stdout.write(JUDGE_MARK + json.dumps(answer) + "\n")
        sys.stdout.flush()


def _describe(bentoml: Any, cli: Any, runner: Any) -> dict[str, Any]:
    home = Path(os.environ["BENTOML_HOME"])
    models = [str(model.tag) for model in bentoml.models.list()]
    bentos = [str(bento.tag) for bento in bentoml.list()]
    # get(name) writes `latest` itself when it is missing; only resolve names that have one.
    for name in {tag.split(":")[0] for tag in models if (home / "models" / tag.split(":")[0] / "latest").exists()}:
        bentoml.models.get(name)
    for name in {tag.split(":")[0] for tag in bentos if (home / "bentos" / tag.split(":")[0] / "latest").exists()}:
        bentoml.get(name)
    listings = {}
    for key, arguments in (("cli_models", ["models", "list", "-o", "json"]), ("cli_bentos", ["list", "-o", "json"])):
        outcome = runner.invoke(cli, arguments, catch_exceptions=True)
        if outcome.exit_code != 0:
            raise RuntimeError(f"bentoml {' '.join(arguments)} exited {outcome.exit_code}: {outcome.output[-300:]}")
        listings[key] = [entry["tag"] for entry in json.loads(outcome.output)]
    return {"models": models, "bentos": bentos, **listings}


class Judge:
    """A long-lived process with BentoML imported once, pointed at one fixed store path."""

    def __init__(self, home: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.crash_trials", "judge"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=child_environment(home), cwd=REPO,
        )

    def describe(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("describe\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(JUDGE_MARK):
                return json.loads(line[len(JUDGE_MARK):])
        raise RuntimeError(f"the BentoML judge died (exit {self.process.wait()})")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---------------------------------------------------------------- one trial


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
        present = {key for key in self.pristine.versions if _version_dir(self.home, key).is_dir()}
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
        present = {key for key in self.pristine.versions if _version_dir(self.home, key).is_dir()}
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


# ---------------------------------------------------------------- the whole bench


@dataclass
class Summary:
    results: list[TrialResult]
    calibration: Calibration
    planned: int
    seconds: float

    @property
    def failures(self) -> list[TrialResult]:
        return [result for result in self.results if result.failures]

    def describe(self) -> str:
        by_mode = Counter(result.mode for result in self.results)
        killed = sum(1 for result in self.results if result.killed)
        mid_run = sum(1 for r in self.results if 0 < r.vanished_after_kill < self.planned)
        lines = [
            f"store: {self.planned} planned deletions; a full run makes {self.calibration.mutations} filesystem "
            f"mutations in {self.calibration.run_seconds:.2f}s ({self.calibration.acting_seconds:.2f}s after run.started)",
            "modes: " + ", ".join(f"{mode} {by_mode[mode]}" for mode in MODES),
            f"killed before the run ended: {killed}; killed with some but not all planned versions gone: {mid_run}; "
            f"all gone: {sum(1 for r in self.results if r.vanished_after_kill == self.planned)}; "
            f"none gone: {sum(1 for r in self.results if r.vanished_after_kill == 0)}; "
            f"trash left for recovery: {sum(1 for r in self.results if r.trash_after_kill)}",
        ]
        for result in self.failures:
            lines.append(f"FAILED trial {result.number} ({result.mode} {result.parameter:g}):")
            lines.extend(f"    {failure}" for failure in result.failures)
        lines.append(f"trials: {len(self.results)}  failures: {len(self.failures)}  ({self.seconds:.0f}s)")
        return "\n".join(lines)


def run_bench(
    work: Path, trials: int, *, seed: int = 1, size: str = "full", workers: int = 2, only: int | None = None,
    pristine_home: Path | None = None, progress: bool = False,
) -> Summary:
    """Build (or reuse) the BentoML store, run the trials on ``workers`` threads, return the summary."""
    started = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    if pristine_home is None:
        pristine_home = work / "pristine" / "bentoml"
        if not (pristine_home / "models").is_dir():
            shutil.rmtree(pristine_home.parent, ignore_errors=True)
            build_pristine(pristine_home.parent, size)
    pristine = Pristine.read(pristine_home)
    numbers = [only] if only is not None else list(range(trials))
    workers = max(1, min(workers, len(numbers)))
    benches = [Bench(work / f"worker-{index}", pristine, size) for index in range(workers)]
    try:
        planned = benches[0].plan()
        calibration = benches[0].calibrate()
        results: list[TrialResult] = []
        lock = threading.Lock()

        def work_through(bench: Bench, mine: list[int]) -> None:
            for number in mine:
                result = bench.run_trial(number, seed, calibration, planned)
                with lock:
                    results.append(result)
                    if progress:
                        mark = "FAIL" if result.failures else "ok"
                        print(f"trial {number:4d} {result.mode:8s} {result.parameter:8.3f} vanished "
                              f"{result.vanished_after_kill:3d} {mark}", flush=True)

        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(work_through, bench, numbers[index::workers]) for index, bench in enumerate(benches)]
            for future in futures:
                future.result()
    finally:
        for bench in benches:
            bench.close()
    results.sort(key=lambda result: result.number)
    return Summary(results, calibration, len(planned), time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_trials", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="trials", choices=["trials", "build", "judge"])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--only", type=int, help="run just this trial number (with the same --seed)")
    parser.add_argument("--work", type=Path, help="work directory (default: a new temp dir); failed trials are kept there")
    parser.add_argument("--home", type=Path, help="for `build`: the store to create")
    parser.add_argument("--quiet", action="store_true", help="no line per trial")
    arguments = parser.parse_args(argv)
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    if arguments.command == "build":
        print(json.dumps(build_store(arguments.home, arguments.size)))
        return 0
    if arguments.command == "judge":
        judge_main()
        return 0
    work = arguments.work or Path(tempfile.mkdtemp(prefix="retentiond-crash-"))
    summary = run_bench(
        work, arguments.trials, seed=arguments.seed, size=arguments.size, workers=arguments.workers,
        only=arguments.only, progress=not arguments.quiet,
    )
    print(summary.describe())
    if summary.failures:
        print(f"failed trials are kept under {work / 'failed'}")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
