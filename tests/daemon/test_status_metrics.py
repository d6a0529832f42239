from __future__ import annotations

import json
import stat
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.config import load_config
from daemon.errors import EXIT_OK
from daemon.metrics import Metrics

POLICIES = (
    '[[retention]]\nname = "ci"\nkeep_last = 2\nschedule = "0 3 * * *"\n'
    '[[disk]]\nname = "pressure"\nhigh_watermark = "99.99%"\nlow_watermark = "99%"\nmax_store_size = "10GiB"\n'
)


def test_status_reports_store_disk_trash_and_runs(
    five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(POLICIES)
    assert main(["apply", "--config", str(config), "--policy", "ci"]) == EXIT_OK
    capsys.readouterr()
    assert main(["status", "--config", str(config), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["store"]["names"] == [
        {"kind": "model", "name": "iris", "versions": 2, "size_bytes": report["store"]["size_bytes"],
         "disk_bytes": report["store"]["disk_bytes"],
         "oldest": report["store"]["names"][0]["oldest"], "newest": report["store"]["names"][0]["newest"]}
    ]
    assert report["trash"]["versions"] == 0
    policies = {policy["name"]: policy for policy in report["policies"]}
    assert policies["ci"]["last_run"]["outcome"] == "ok" and policies["ci"]["last_run"]["actions_ok"] == 3
    assert policies["ci"]["next_run"].endswith("03:00:00Z")
    assert policies["pressure"]["last_run"] is None and policies["pressure"]["check_interval"] == "10s"
    limits = report["disk"]["policies"][0]
    assert limits["max_store_size"]["bytes"] == 10 * 1024**3 and limits["store_over_budget"] is False
    assert 0 < report["disk"]["used_ratio"] < 1
    assert main(["status", "--config", str(config)]) == EXIT_OK
    human = capsys.readouterr().out
    assert "iris" in human and "pressure: evicts above high_watermark 99.99%" in human and "trash: 0 versions" in human


def test_metrics_textfile_is_written_atomically_world_readable(
    five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = tmp_path / "textfile" / "retentiond.prom"
    config = write_config(POLICIES + f'[metrics]\ntextfile = "{path}"\n')
    assert main(["apply", "--config", str(config), "--policy", "ci"]) == EXIT_OK
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert 'retentiond_actions_total{action="delete",outcome="ok",policy="ci"} 3.0' in text
    assert 'retentiond_store_versions{kind="model"} 2.0' in text
    assert 'retentiond_last_run_success{policy="ci"} 1.0' in text and "retentiond_disk_used_ratio" in text
    assert list(path.parent.iterdir()) == [path]


def test_metrics_endpoint_serves_on_loopback(write_config: Callable[..., Path]) -> None:
    metrics = Metrics(load_config(str(write_config(POLICIES))).settings)
    metrics.serve("127.0.0.1", 0)
    try:
        assert metrics._server is not None  # noqa: SLF001
        host, port = metrics._server.server_address[:2]  # noqa: SLF001
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"retentiond_disk_used_ratio" in response.read()
    finally:
        metrics.close()
