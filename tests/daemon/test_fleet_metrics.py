"""Figures per policy, metrics written by every run (two writers, one textfile), the audit chain gauge, savings."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.audit import read_records
from daemon.cli import main
from daemon.config import load_config
from daemon.errors import EXIT_OK
from daemon.metrics import Metrics
from daemon.offhours_figures import SavingsLedger, overdue
from daemon.runner import apply_once
from policies.model import Ownership
from policies.spec import OffhoursPolicy
from tests.cloud_server import CloudServer
from tests.fakestore import add_model

NOW = datetime.now(timezone.utc).replace(microsecond=0)
TWO_POLICIES = (
    '[[retention]]\nname = "a"\nmatch = ["iris"]\nkeep_last = 2\n'
    '[[retention]]\nname = "b"\nmatch = ["wine"]\nkeep_last = 1\n'
)


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of a textfile by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def tree_bytes(path: Path) -> int:
    """Disk usage as du counts it: what deleting ``path`` frees."""
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


@pytest.fixture
def two_names(home: Path) -> tuple[int, int]:
    """iris: 5 versions (policy a keeps 2), wine: 4 versions (policy b keeps 1); return the bytes each policy frees."""
    iris = [add_model(home, "iris", f"i{day}", NOW - timedelta(days=day + 1), file_bytes=100) for day in range(5)]
    wine = [add_model(home, "wine", f"w{day}", NOW - timedelta(days=day + 1), file_bytes=10_000) for day in range(4)]
    return sum(map(tree_bytes, iris[2:])), sum(map(tree_bytes, wine[1:]))


def test_a_run_of_two_policies_gives_each_its_own_figures_in_state_status_metrics_and_audit(
    two_names: tuple[int, int], write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    textfile = tmp_path / "tf" / "retentiond.prom"
    config = write_config(TWO_POLICIES + f'[metrics]\ntextfile = "{textfile}"\n')
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    capsys.readouterr()
    a_bytes, b_bytes = two_names
    assert a_bytes != b_bytes
    state = json.loads((tmp_path / "state" / "state.json").read_text())["runs"]
    assert (state["a"]["actions_planned"], state["a"]["actions_ok"], state["a"]["bytes_freed"], state["a"]["kept"]) == (3, 3, a_bytes, 2)
    assert (state["b"]["actions_planned"], state["b"]["actions_ok"], state["b"]["bytes_freed"], state["b"]["kept"]) == (3, 3, b_bytes, 1)
    assert main(["status", "--config", str(config), "--json"]) == EXIT_OK
    policies = {p["name"]: p for p in json.loads(capsys.readouterr().out)["policies"]}
    assert policies["a"]["last_run"]["bytes_freed"] == a_bytes and policies["b"]["last_run"]["bytes_freed"] == b_bytes
    assert policies["a"]["totals"]["bytes_freed"] == a_bytes and policies["a"]["totals"]["runs"] == {"ok": 1}
    assert policies["a"]["kind"] == "retention"
    values = samples(textfile)
    assert values[("retentiond_bytes_freed_total", (("policy", "a"),))] == a_bytes
    assert values[("retentiond_bytes_freed_total", (("policy", "b"),))] == b_bytes
    assert values[("retentiond_actions_total", (("action", "delete"), ("outcome", "ok"), ("policy", "b")))] == 3
    finished = next(r for r in read_records(tmp_path / "log" / "audit.jsonl") if r["event"] == "run.finished")
    assert finished["by_policy"]["a"]["bytes_freed"] == a_bytes and finished["by_policy"]["b"]["bytes_freed"] == b_bytes
    assert finished["bytes_freed"] == a_bytes + b_bytes


def test_apply_and_the_daemon_add_to_one_set_of_counters(
    two_names: tuple[int, int], write_config: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    textfile = tmp_path / "tf" / "retentiond.prom"
    config = write_config(TWO_POLICIES + f'[metrics]\ntextfile = "{textfile}"\n')
    assert main(["apply", "--config", str(config), "--policy", "a"]) == EXIT_OK
    # The daemon's own Metrics, as `run` holds it, records a later run of the other policy.
    from daemon.fleet import observed_run

    settings = load_config(str(config)).settings
    daemon_metrics = Metrics(settings, refresh_seconds=60)
    observed_run(settings, ["b"], lambda on_locked: apply_once(settings, ["b"], on_locked=on_locked), daemon=True,
                 metrics=daemon_metrics)
    values = samples(textfile)
    a_bytes, b_bytes = two_names
    assert values[("retentiond_bytes_freed_total", (("policy", "a"),))] == a_bytes  # apply's run survives the daemon's write
    assert values[("retentiond_bytes_freed_total", (("policy", "b"),))] == b_bytes
    assert values[("retentiond_metrics_stale_after_seconds", ())] == 180
    add_model(home, "iris", "i9", NOW - timedelta(days=9))
    assert main(["apply", "--config", str(config), "--policy", "a"]) == EXIT_OK
    values = samples(textfile)
    assert values[("retentiond_runs_total", (("outcome", "ok"), ("policy", "a")))] == 2
    assert values[("retentiond_bytes_freed_total", (("policy", "b"),))] == b_bytes  # not reset by apply


def test_an_audit_log_cut_at_its_end_sets_the_chain_gauge_to_0(
    two_names: tuple[int, int], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    textfile = tmp_path / "tf" / "retentiond.prom"
    config = write_config(TWO_POLICIES + f'[metrics]\ntextfile = "{textfile}"\n')
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    assert samples(textfile)[("retentiond_audit_chain_intact", ())] == 1
    log = tmp_path / "log" / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))  # someone removed the last record
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    assert samples(textfile)[("retentiond_audit_chain_intact", ())] == 0


HOUR = timedelta(hours=1)


def _record(name: str, terminated_at: datetime, window_ends_at: datetime | None = None, manual: bool = False) -> Ownership:
    return Ownership("cloud", name, "manual" if manual else "nights", terminated_at, window_ends_at, manual=manual)


def test_savings_accrue_while_down_and_close_when_the_record_goes() -> None:
    start = datetime(2026, 11, 20, 20, tzinfo=timezone.utc)
    ledger = SavingsLedger()
    costs = {"nights": 2.0}
    assert ledger.reconcile([_record("a", start), _record("m", start, manual=True)], start + HOUR, costs)
    totals = ledger.totals(start + 3 * HOUR, costs)["nights"]
    assert (totals.deployment_hours, totals.cost, totals.down) == (3.0, 6.0, 1)  # still down: accruing; manual: not counted
    assert ledger.reconcile([], start + 11 * HOUR, {"nights": 3.0})  # restarted; priced at the cost in force then
    totals = ledger.totals(start + 20 * HOUR, {"nights": 3.0})["nights"]
    assert (totals.deployment_hours, totals.cost, totals.down) == (11.0, 33.0, 0)
    assert not ledger.reconcile([], start + 21 * HOUR, costs)


def test_overdue_counts_restarts_after_the_window_and_deletions_past_delete_after() -> None:
    policy = OffhoursPolicy(name="nights", provider="cloud", match=["staging-*"], downtime="always", delete_after="1d")
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    records = [_record("staging-a", now - 5 * HOUR, now - HOUR), _record("staging-b", now - HOUR, now + HOUR)]
    inactive = {("cloud", "staging-c"): now - 30 * HOUR, ("cloud", "staging-d"): now - HOUR, ("cloud", "prod"): now - 90 * HOUR}
    late = overdue(records, inactive, [policy], now)
    assert late.restarts == {"nights": 1} and late.deletions == {"nights": 1}


@pytest.fixture
def cloud() -> Iterator[CloudServer]:
    with CloudServer(token="secret-token") as server:
        server.add_deployment("staging-a")
        yield server


def test_hours_saved_are_in_status_and_metrics_after_a_window(
    cloud: CloudServer, write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    textfile = tmp_path / "tf" / "retentiond.prom"

    def config(window: str) -> Path:
        return write_config(
            f'[providers.cloud]\ntype = "bentocloud"\nendpoint = "{cloud.url}"\napi_token = "secret-token"\n'
            f'[[offhours]]\nname = "nights"\nprovider = "cloud"\nmatch = ["staging-*"]\n{window}\ngrace_period = "0s"\n'
            f'hourly_cost = 2.0\n[metrics]\ntextfile = "{textfile}"\n'
        )

    inside = load_config(str(config('downtime = "always"'))).settings
    terminated_at = datetime.now(timezone.utc) - 3 * HOUR
    apply_once(inside, clock=lambda: terminated_at)  # terminated three hours ago
    Metrics(inside).write_textfile()
    values = samples(textfile)
    assert values[("retentiond_deployments_terminated", (("policy", "nights"),))] == 1
    assert 2.99 < values[("retentiond_deployment_hours_saved_total", (("policy", "nights"),))] < 3.1
    assert main(["apply", "--config", str(config('downtime = "never"'))]) == EXIT_OK  # restarted now
    capsys.readouterr()
    assert main(["status", "--config", str(config('downtime = "never"')), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    nights = next(p for p in report["policies"] if p["name"] == "nights")
    assert nights["kind"] == "offhours"
    assert nights["savings"]["deployments_down"] == 0 and 2.99 < nights["savings"]["deployment_hours_saved"] < 3.1
    assert 5.98 < nights["savings"]["cost_saved"] < 6.2 and report["savings"]["cost_saved"] == nights["savings"]["cost_saved"]
    assert main(["status", "--config", str(config('downtime = "never"'))]) == EXIT_OK
    human = " ".join(capsys.readouterr().out.split())  # the console wraps long lines at its width
    assert re.search(r"nights \(offhours\): last run .*; 3\.0 deployment-hours down, 6\.0\d saved, 0 deployments down now", human), human
    values = samples(textfile)
    assert values[("retentiond_deployments_terminated", (("policy", "nights"),))] == 0
    assert 5.98 < values[("retentiond_cost_saved_total", (("policy", "nights"),))] < 6.2
