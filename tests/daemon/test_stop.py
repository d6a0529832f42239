"""SIGINT and SIGTERM of a one-off `retentiond apply`, as real subprocesses and real signals, in every phase.

The timing of each signal is tied to an observable event, never to a sleep: an audit line, a log line
on stderr, or an audit hook inside the apply process that signals the process itself at a chosen
system call (the same injector idea as bench/crash_trials.py, with a catchable signal instead of SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from daemon.audit import read_records
from daemon.ownership import OwnershipFile
from tests.fakestore import add_model, make_home, populate

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(timezone.utc)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
WEIGHT_FILES = 3
INTERRUPTED = "interrupted before it started"  # the outcome of an intent written before the stop request
NOT_STARTED = "not started: the run was interrupted"  # in the JSON only: a planned action that got no intent
WAIT_SECONDS = 90.0  # generous: the machine is shared; every wait ends as soon as its event is seen

# Runs `retentiond ARGS` in-process after installing an audit hook that sends SIGNAL_NUMBER to this very
# process once, just before the first SIGNAL_AT_EVENT whose first argument contains SIGNAL_MATCH.
SIGNAL_AT = r"""
import os, sys
_event, _match, _number = os.environ["SIGNAL_AT_EVENT"], os.environ["SIGNAL_MATCH"], int(os.environ["SIGNAL_NUMBER"])
_sent = []

def _hook(event, args):
    if event != _event or _sent or not args:
        return
    try:
        path = os.fsdecode(args[0])
    except TypeError:
        return
    if _match in path:
        _sent.append(path)
        os.kill(os.getpid(), _number)

sys.addaudithook(_hook)
from daemon.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 names × 500 versions: with keep_last = 1 a run deletes 1,996 of them, in 32 audited batches."""
    home = make_home(tmp_path_factory.mktemp("stop-pristine"))
    populate(home, names=4, versions_per_name=500, now=NOW, files=WEIGHT_FILES)
    return home


@pytest.fixture
def home(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bentoml"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def write_config(tmp_path: Path, home: Path, policies: str = '[[retention]]\nname = "ci"\nkeep_last = 1\n') -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        f'audit_log = "{tmp_path / "audit.jsonl"}"\n' + policies
    )
    return config


def environment(**extra: str) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("RETENTIOND_")}
    return {**base, "PYTHONPATH": str(REPO), "BENTOML_DO_NOT_TRACK": "True", **extra}


class Apply:
    """A `retentiond apply --json` child; stdout and stderr go to files (the JSON is larger than a pipe)."""

    def __init__(self, tmp_path: Path, config: Path, *extra: str, injected: dict[str, str] | None = None) -> None:
        self.out_path, self.err_path = tmp_path / "apply.out", tmp_path / "apply.err"
        prefix = [sys.executable, "-c", SIGNAL_AT] if injected else [sys.executable, "-m", "daemon"]
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*prefix, "apply", "--config", str(config), "--json", *extra],
                stdout=out, stderr=err, cwd=REPO, env=environment(**(injected or {})),
            )

    def wait(self, timeout: float = WAIT_SECONDS) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"apply still running after {timeout}s; stderr:\n{self.stderr()[-3000:]}") from None

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def result(self) -> dict:
        return json.loads(self.out_path.read_text())


def wait_until(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes], timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"apply exited ({process.returncode}) before {what}")
        time.sleep(0.002)
    raise AssertionError(f"no {what} within {timeout}s")


def audit_has(audit: Path, event: str) -> bool:
    return audit.exists() and f'"event": "{event}"'.encode() in audit.read_bytes()


def records(tmp_path: Path) -> list[dict]:
    return list(read_records(tmp_path / "audit.jsonl"))


def status_json(config: Path) -> dict:
    status = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--config", str(config), "--json"],
        capture_output=True, text=True, cwd=REPO, env=environment(), timeout=WAIT_SECONDS,
    )
    assert status.returncode == 0, status.stderr
    return json.loads(status.stdout)


def assert_outcomes_match_the_summary(run_records: list[dict]) -> dict:
    """Every intent has exactly one outcome; the run.interrupted record counts exactly those outcomes."""
    intents = Counter((r["kind"], r["name"], r["version"]) for r in run_records if r["event"].endswith("_intended"))
    outcomes = [r for r in run_records if "outcome" in r and r["event"] != "run.interrupted"]
    assert Counter((r["kind"], r["name"], r["version"]) for r in outcomes) == intents
    [summary] = [r for r in run_records if r["event"] == "run.interrupted"]
    by_outcome = Counter(r["outcome"] for r in outcomes)
    assert (summary["actions_ok"], summary["actions_failed"], summary["actions_skipped"]) == (
        by_outcome["ok"], by_outcome["failed"], by_outcome["skipped"]
    )
    assert summary["actions_planned"] == sum(by_outcome.values()) + summary["actions_not_started"]
    assert all(r["error"] == INTERRUPTED for r in outcomes if r["outcome"] == "skipped")
    return summary


def store_versions(home: Path) -> dict[str, dict[str, datetime]]:
    """Per model name, each version directory with its creation_time; asserts each one is whole."""
    found: dict[str, dict[str, datetime]] = {}
    for name_dir in sorted((home / "models").iterdir()):
        for version_dir in sorted(path for path in name_dir.iterdir() if path.is_dir()):
            entries = sorted(entry.name for entry in version_dir.iterdir())
            assert entries == ["model.yaml", *(f"weights-{index}.bin" for index in range(WEIGHT_FILES))], version_dir
            created = yaml.safe_load((version_dir / "model.yaml").read_text())["creation_time"]
            found.setdefault(name_dir.name, {})[version_dir.name] = datetime.fromisoformat(created)
    return found


def assert_latest_is_the_newest(home: Path) -> None:
    for name, versions in store_versions(home).items():
        assert (home / "models" / name / "latest").read_text() == max(versions, key=lambda v: versions[v]), name


def trash_entries(home: Path) -> list[Path]:
    trash = home / ".retentiond" / "trash"
    return list(trash.glob("*/*/*/*")) if trash.is_dir() else []


def bentoml_lists(home: Path) -> dict:
    judge = subprocess.run(
        [sys.executable, "-m", "tests.bentoml_judge", "describe", str(home)], capture_output=True, text=True,
        env=environment(BENTOML_HOME=str(home)), cwd=REPO, timeout=300,
    )
    assert judge.returncode == 0, judge.stderr[-2000:]
    return json.loads(judge.stdout.splitlines()[-1])


# ---------------------------------------------------------------- during the deletions


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_signal_during_deletions_finishes_the_one_in_progress_and_records_the_interruption(
    home: Path, tmp_path: Path, signal_number: signal.Signals
) -> None:
    before = store_versions(home)
    config = write_config(tmp_path, home)
    audit = tmp_path / "audit.jsonl"
    apply = Apply(tmp_path, config)
    wait_until(lambda: audit_has(audit, "artifact.deleted"), "first artifact.deleted record", apply.process)
    apply.process.send_signal(signal_number)
    assert apply.wait() == EXIT_CODES[signal_number], apply.stderr()
    assert "Traceback" not in apply.stderr()
    assert f"{signal_number.name}: run interrupted during actions" in apply.stderr()

    result = apply.result()
    assert result["interrupted"] is True and result["interrupted_during"] == "actions"
    not_started = [a for a in result["actions"] if a["error"] == NOT_STARTED]
    assert not_started, "the signal must land while deletions are still pending"
    summary = assert_outcomes_match_the_summary(records(tmp_path))
    assert summary["interrupted_during"] == "actions" and summary["actions_not_started"] == len(not_started)
    assert summary["actions_planned"] == len(result["actions"]) == 4 * 499

    # Exactly the versions audited as deleted are gone; every one left is whole; latest names the newest.
    deleted = {(r["name"], r["version"]) for r in records(tmp_path) if r["event"] == "artifact.deleted"}
    after = store_versions(home)
    gone = {(name, version) for name, versions in before.items() for version in versions if version not in after.get(name, {})}
    assert gone == deleted and len(deleted) == summary["actions_ok"] > 0
    assert_latest_is_the_newest(home)
    listed = bentoml_lists(home)
    assert len(listed["models"]) == sum(len(versions) for versions in after.values())

    last_run = status_json(config)["policies"][0]["last_run"]
    assert last_run["outcome"] == "interrupted" and last_run["interrupted_during"] == "actions"
    assert last_run["actions_ok"] == summary["actions_ok"]

    # The next run finishes the job and empties what the interrupted one left in the trash.
    finish = subprocess.run(
        [sys.executable, "-m", "daemon", "apply", "--config", str(config), "--json"],
        capture_output=True, text=True, cwd=REPO, env=environment(), timeout=WAIT_SECONDS,
    )
    assert finish.returncode == 0, finish.stderr
    assert {len(versions) for versions in store_versions(home).values()} == {1}
    assert_latest_is_the_newest(home)
    assert trash_entries(home) == []
    assert records(tmp_path)[-1]["event"] == "run.finished"
    assert status_json(config)["policies"][0]["last_run"]["outcome"] == "ok"
    verify = subprocess.run(
        [sys.executable, "-m", "daemon", "audit", "verify", "--config", str(config)],
        capture_output=True, text=True, cwd=REPO, env=environment(), timeout=WAIT_SECONDS,
    )
    assert verify.returncode == 0, verify.stderr


# ---------------------------------------------------------------- before the run acts


def test_sigterm_while_waiting_for_the_lock_exits_143_at_once_with_nothing_done(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, home)
    (home / ".retentiond").mkdir()
    held = FileLock(home / ".retentiond" / "lock")
    held.acquire()  # another run holds the store
    try:
        apply = Apply(tmp_path, config, "--wait", "600")
        wait_until(lambda: "store.lock_waiting" in apply.stderr(), "store.lock_waiting log line", apply.process)
        signalled_at = time.monotonic()
        apply.process.send_signal(signal.SIGTERM)
        assert apply.wait() == 143
        assert time.monotonic() - signalled_at < 30  # not the 600 s of --wait
    finally:
        held.release()
    assert "SIGTERM: stopped before the store was locked; nothing was done" in apply.stderr()
    assert "Traceback" not in apply.stderr()
    assert not (tmp_path / "audit.jsonl").exists()  # no lock, no run: nothing to record
    assert sum(len(versions) for versions in store_versions(home).values()) == 4 * 500


def test_sigint_during_the_scan_exits_130_and_records_an_interrupted_run(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, home)
    # The first file opened under model-0001 is read by the scan (its listing or its measuring pass).
    apply = Apply(tmp_path, config, injected={
        "SIGNAL_AT_EVENT": "open", "SIGNAL_MATCH": str(home / "models" / "model-0001") + "/",
        "SIGNAL_NUMBER": str(int(signal.SIGINT)),
    })
    assert apply.wait() == 130, apply.stderr()
    assert "Traceback" not in apply.stderr()
    result = apply.result()
    assert (result["interrupted"], result["interrupted_during"], result["actions"]) == (True, "scan", [])
    run_records = records(tmp_path)
    assert [r["event"] for r in run_records] == ["run.started", "run.interrupted"]
    assert run_records[-1]["interrupted_during"] == "scan" and run_records[-1]["actions_planned"] == 0
    assert sum(len(versions) for versions in store_versions(home).values()) == 4 * 500
    last_run = status_json(config)["policies"][0]["last_run"]
    assert (last_run["outcome"], last_run["interrupted_during"]) == ("interrupted", "scan")


# ---------------------------------------------------------------- at the end, and with deployments


def test_sigterm_during_the_final_trash_purge_leaves_trash_that_the_next_run_empties(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    populate(home, names=1, versions_per_name=6, now=NOW, files=WEIGHT_FILES)
    config = write_config(tmp_path, home)
    planned = subprocess.run(
        [sys.executable, "-m", "daemon", "plan", "--config", str(config), "--json"],
        capture_output=True, text=True, cwd=REPO, env=environment(), timeout=WAIT_SECONDS,
    )
    last = json.loads(planned.stdout)["actions"][-1]
    # The signal lands just before the last deletion's rename into the trash.
    apply = Apply(tmp_path, config, injected={
        "SIGNAL_AT_EVENT": "os.rename", "SIGNAL_MATCH": str(home / "models" / last["name"] / last["version"]),
        "SIGNAL_NUMBER": str(int(signal.SIGTERM)),
    })
    assert apply.wait() == 143, apply.stderr()
    result = apply.result()
    assert result["actions"][-1]["version"] == last["version"]
    assert [a["outcome"] for a in result["actions"]] == ["ok"] * 5  # the rename in progress went through
    assert (result["interrupted"], result["interrupted_during"]) == (True, "trash")
    summary = assert_outcomes_match_the_summary(records(tmp_path))
    assert (summary["interrupted_during"], summary["actions_ok"], summary["actions_not_started"]) == ("trash", 5, 0)
    left = {path.name for path in trash_entries(home)}
    assert last["version"] in left  # the purge stopped before it...
    assert left <= {action["version"] for action in result["actions"]}  # ...and the trash holds only deleted versions
    assert_latest_is_the_newest(home)

    finish = subprocess.run(
        [sys.executable, "-m", "daemon", "apply", "--config", str(config)],
        capture_output=True, text=True, cwd=REPO, env=environment(), timeout=WAIT_SECONDS,
    )
    assert finish.returncode == 0, finish.stderr
    assert trash_entries(home) == []


def command_provider(tmp_path: Path, terminate_script: str) -> str:
    listing = tmp_path / "deployments.json"
    listing.write_text(json.dumps([{"name": "staging-a", "status": "running"}, {"name": "staging-b", "status": "running"}]))
    return (
        f"[providers.units]\ntype = \"command\"\nlist = \"cat {listing}\"\n"
        f"terminate = \"sh -c '{terminate_script}' {{name}}\"\nrestart = \"true {{name}}\"\n"
        '[[offhours]]\nname = "nights"\nprovider = "units"\ndowntime = "always"\ngrace_period = "0s"\n'
    )


def test_sigterm_during_a_provider_call_lets_it_finish_and_starts_no_other(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    # The hook itself signals retentiond (its parent), then takes a moment: the call in progress must finish.
    config = write_config(tmp_path, home, command_provider(tmp_path, f'kill -TERM $PPID; sleep 0.5; touch {tmp_path}/$0.done'))
    apply = Apply(tmp_path, config)
    assert apply.wait() == 143, apply.stderr()
    assert "Traceback" not in apply.stderr()
    result = apply.result()
    assert [(a["name"], a["outcome"], a["error"]) for a in result["actions"]] == [
        ("staging-a", "ok", None), ("staging-b", "skipped", INTERRUPTED)
    ]
    assert (tmp_path / "staging-a.done").exists() and not (tmp_path / "staging-b.done").exists()
    summary = assert_outcomes_match_the_summary(records(tmp_path))
    assert (summary["interrupted_during"], summary["actions_ok"], summary["actions_skipped"]) == ("actions", 1, 1)
    assert list(OwnershipFile(tmp_path / "state").load().records) == [("units", "staging-a")]


def test_a_second_signal_stops_at_once_even_in_the_middle_of_an_action(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    add_model(home, "iris", "v1", NOW)
    # The first SIGTERM comes from the hook, which then runs for a long time: the action does not end by itself.
    pid_file = tmp_path / "hook.pid"
    config = write_config(tmp_path, home, command_provider(tmp_path, f"echo $$ > {pid_file}; kill -TERM $PPID; sleep 60"))
    apply = Apply(tmp_path, config)
    try:
        wait_until(lambda: "SIGTERM: stopping" in apply.stderr(), "the first SIGTERM acknowledged", apply.process)
        apply.process.send_signal(signal.SIGTERM)
        assert apply.wait(timeout=30) == -signal.SIGTERM  # ended by the signal itself, as with SIGKILL
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)  # the hook runs in a session of its own
    assert "Traceback" not in apply.stderr()
