"""Crash safety, the fast subset of ``python -m tests.crash``: SIGKILL `retentiond apply`
at random moments on a store BentoML built, then let BentoML and the store's own files judge."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.crash.bench import run_bench
from tests.crash.checks import check_store
from tests.crash.injector import child_environment, start_injected
from tests.crash.store import Pristine, build_pristine
from tests.crash.trials import Bench
from tests.fakestore import add_model, make_home

FAST_TRIALS = 12
SEED = 5
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(scope="module")
def pristine_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small store made with the real bentoml package: 17 models (one pinned by label, one referenced by
    the bentos, one whose save died before `latest` was written), 2 bentos."""
    return build_pristine(tmp_path_factory.mktemp("crash-pristine"), "small")


@pytest.mark.bentoml
def test_killed_apply_leaves_a_consistent_store_and_the_next_run_recovers(pristine_home: Path, tmp_path: Path) -> None:
    summary = run_bench(tmp_path, FAST_TRIALS, seed=SEED, size="small", workers=2, pristine_home=pristine_home)
    assert not summary.failures, summary.describe()
    assert len(summary.results) == FAST_TRIALS
    # Where a random kill lands depends on the machine's load; the modes drawn from the seed do not.
    # The test below makes sure the interesting moment (mid-deletion) is always among the trials.
    assert {result.mode for result in summary.results} >= {"op", "timer", "started", "rename"}


@pytest.mark.bentoml
def test_killed_between_two_deletions_the_next_run_finishes_the_plan(pristine_home: Path, tmp_path: Path) -> None:
    """Not left to chance: die before the 2nd..last rename of a version into the trash."""
    bench = Bench(tmp_path / "worker", Pristine.read(pristine_home), "small")
    try:
        planned = bench.plan()
        calibration = bench.calibrate()
        results = [bench.run_trial(number, SEED, calibration, planned, mode="rename") for number in range(3)]
    finally:
        bench.close()
    for result in results:
        assert not result.failures, result.failures
        assert result.killed
        assert 0 < result.vanished_after_kill < len(planned), (result.parameter, result.vanished_after_kill)
        assert result.trash_after_kill  # the recovery run found a run directory in the trash and finished it


@pytest.mark.bentoml
def test_store_checks_catch_every_kind_of_damage(pristine_home: Path, tmp_path: Path) -> None:
    """The judge is only worth its verdicts if it can say no: damage a copy in each way it looks for."""
    pristine = Pristine.read(pristine_home)
    bench = Bench(tmp_path / "worker", pristine, "small")
    try:
        planned = bench.plan()
        home = bench.home
        models = sorted((key for key in pristine.versions if key[0] == "model"), key=lambda key: pristine.versions[key].created_at)
        unplanned_gone = next(key for key in models if key not in planned and key[1] == "mnist")
        planned_without_intent = next(key for key in models if key in planned and key[1] == "iris")
        torn = next(key for key in models if key not in planned and key[1] == "iris")
        shutil.rmtree(home / "models" / unplanned_gone[1] / unplanned_gone[2])
        shutil.rmtree(home / "models" / planned_without_intent[1] / planned_without_intent[2])
        (home / "models" / torn[1] / torn[2] / "weights.bin").write_bytes(b"short")
        (home / "models" / "iris" / "latest").write_text(torn[2])
        (home / "models" / "iris" / ".trash").mkdir()

        failures = check_store(home, pristine, planned, bench.audit_path, bench.judge.describe())
    finally:
        bench.close()
    text = "\n".join(failures)
    assert f"model {unplanned_gone[1]}:{unplanned_gone[2]} is gone but was not planned" in text
    assert f"model iris:{planned_without_intent[2]} is gone without an audit intent" in text
    assert f"model iris:{torn[2]} is not whole" in text and "changed ['weights.bin']" in text
    assert f"model iris: latest names {torn[2]!r}" in text
    assert "new entry in the store: models/iris/.trash" in text
    assert "BentoML cannot read the store" in text  # BentoML itself chokes on the stray directory


def test_kill_before_an_emptied_name_dir_is_removed_leaves_only_trash(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    for day in range(2):
        add_model(home, "old", f"v{day}", NOW - timedelta(days=40 + day))
    (home / "models" / "old" / "latest").unlink()  # a first save that died before writing latest
    add_model(home, "iris", "keep", NOW - timedelta(days=1))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
        '[[retention]]\nname = "ci"\nkeep_newer_than = "7d"\nallow_remove_all = true\n'
    )
    apply = ["apply", "--config", str(config), "--json"]
    killed = start_injected(apply, home, tmp_path, 1, CRASH_AT_EVENT="os.rmdir", CRASH_MATCH=str(home / "models" / "old"))
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert not list((home / "models" / "old").iterdir())  # both versions are in the trash, the name dir is empty

    recovery = subprocess.run(
        [str(Path(sys.executable).parent / "retentiond"), *apply],
        capture_output=True, text=True, env=child_environment(home), timeout=60,
    )
    assert recovery.returncode == 0, recovery.stderr
    assert not any((home / ".retentiond" / "trash").iterdir())
    # BentoML removes a name directory with its last version; after recovery the store must look the same.
    assert sorted(path.name for path in (home / "models").iterdir()) == ["iris"]
