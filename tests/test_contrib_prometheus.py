"""contrib/prometheus and contrib/grafana cannot rot: promtool judges the rules, a real Prometheus scrapes
the daemon, and every metric they name is one that retentiond writes (names taken from its code)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.metric_families import families
from daemon.metric_snapshot import Snapshot
from tests.fakestore import make_home, populate
from tests.helpers.daemon_process import NOW, Daemon, store_bytes, write_config

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "contrib" / "prometheus" / "retentiond.rules.yml"
RULE_TESTS = REPO / "contrib" / "prometheus" / "tests" / "retentiond.test.yml"
DASHBOARD = REPO / "contrib" / "grafana" / "retentiond.json"
PROMETHEUS_LIFETIME_SECONDS = 90

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="Debian's prometheus package (prometheus, promtool) is not installed; .ci/run installs it",
)


def written_names() -> set[str]:
    """Return every series name retentiond writes, from its own metric families (counters end in _total)."""
    names = set()
    for family in families(Snapshot(state={})):
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def named_in(text: str) -> set[str]:
    return set(re.findall(r"\bretentiond_[a-z_]+\b", text))


def test_rules_and_dashboard_name_only_metrics_that_retentiond_writes() -> None:
    written = written_names()
    assert {"retentiond_bytes_freed_total", "retentiond_deployment_hours_saved_total", "retentiond_disk_used_ratio"} <= written
    rules, dashboard = named_in(RULES.read_text()), named_in(DASHBOARD.read_text())
    assert len(rules) >= 8 and len(dashboard) >= 15
    assert rules - written == set()
    assert dashboard - written == set()


def test_dashboard_shows_what_the_fleet_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])
    for name in (
        "retentiond_bytes_freed_total", "retentiond_store_bytes", "retentiond_disk_used_ratio",
        "retentiond_disk_high_watermark_ratio", "retentiond_eviction_blocked_bytes", "retentiond_runs_total",
        "retentiond_deployments_terminated", "retentiond_deployment_hours_saved_total", "retentiond_cost_saved_total",
    ):
        assert name in exprs
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


@needs_prometheus
def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tested = subprocess.run(["promtool", "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator:
    started: list[subprocess.Popen[bytes]] = []

    def start(target_port: int) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{RULES}']\n"
            f"scrape_configs:\n  - job_name: retentiond\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
        )
        log = (tmp_path / "prometheus.log").open("wb")
        process = subprocess.Popen(
            ["timeout", str(PROMETHEUS_LIFETIME_SECONDS), "prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        started.append(process)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(base: str, expression: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return list(json.loads(response.read())["data"]["result"])
    except OSError:
        return []


@needs_prometheus
def test_a_real_prometheus_scrapes_the_daemon_and_answers_with_its_figures(tmp_path: Path, prometheus_factory) -> None:  # type: ignore[no-untyped-def]
    home = make_home(tmp_path)
    populate(home, names=2, versions_per_name=5, now=NOW, files=2)
    metrics_port = free_port()
    budget = store_bytes(home) // 2
    config = write_config(
        tmp_path, home,
        f'[[disk]]\nname = "budget"\nmax_store_size = "{budget}B"\ncheck_interval = "1s"\n'
        f'[metrics]\nlisten_port = {metrics_port}\n',
    )
    daemon = Daemon(tmp_path, config)
    try:
        daemon.read_messages(until="READY=1")
        base = prometheus_factory(metrics_port)
        deadline = time.monotonic() + 60
        freed: list[dict] = []
        while time.monotonic() < deadline and not freed:
            freed = query(base, 'retentiond_bytes_freed_total{policy="budget"} > 0')
            daemon.read_messages_nowait()  # as systemd would: a full notify socket blocks the daemon's sends
            time.sleep(0.5)
        assert freed, f"no figure through Prometheus; daemon log:\n{daemon.logs()[-3000:]}"
        assert freed[0]["metric"]["job"] == "retentiond" and float(freed[0]["value"][1]) > 0
        assert query(base, "up{job='retentiond'}")[0]["value"][1] == "1"
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as response:
            groups = json.loads(response.read())["data"]["groups"]
        assert sorted(rule["name"] for group in groups for rule in group["rules"]) == sorted(
            re.findall(r"alert: (\w+)", RULES.read_text())
        )
        assert daemon.stop() == 0, daemon.logs()[-3000:]
    finally:
        daemon.close()
