"""[notify]: one webhook POST and healthchecks pings per run, through the real CLI, against a local receiver."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.audit import read_records
from daemon.config import NotifySection, load_config
from daemon.errors import EXIT_ACTIONS_FAILED, EXIT_BUSY, EXIT_OK
from daemon.notify_run import RunNotifier
from daemon.redact import describe_url
from daemon.run_figures import PolicyFigures, RunSummary
from daemon.store import Store
from tests.fakestore import add_model
from tests.receiver import Receiver, dead_url

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(timezone.utc).replace(microsecond=0)
CHECK_UUID = "5d6e2b0c-9f1a-4c3e-8a7b-0123456789ab"
TOKEN = "s3cr3t-header-token"
HOOK_SECRET = "T000-B000-hooksecret"


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RETENTIOND_")}
    environment["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "daemon", *arguments], capture_output=True, text=True, env=environment, cwd=REPO, timeout=120
    )


def notify_block(base: str, timeout: str = "5s", hook: str | None = None) -> str:
    return (
        f'[notify]\nwebhook_url = "{hook or base}/hooks/{HOOK_SECRET}"\n'
        f'webhook_headers = {{ Authorization = "Bearer {TOKEN}" }}\n'
        f'healthchecks_url = "{base}/ping/{CHECK_UUID}"\ntimeout = "{timeout}"\n'
    )


def versions(home: Path, count: int, name: str = "iris") -> list[str]:
    made = []
    for day in range(count):
        add_model(home, name, f"v{day}", NOW - timedelta(days=day + 1))
        made.append(f"v{day}")
    return made


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (CHECK_UUID, TOKEN, HOOK_SECRET):
            assert secret not in text


def test_success_posts_one_message_for_many_actions_and_pings_start_then_success(
    home: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    versions(home, 20)
    with Receiver() as receiver:
        config = write_config('[[retention]]\nname = "ci"\nkeep_last = 2\n' + notify_block(receiver.url))
        completed = run_cli("apply", "--config", str(config))
        assert completed.returncode == EXIT_OK, completed.stderr
        requests = receiver.wait_for(3)
        time.sleep(0.2)
    # One message for 18 deletions, and the two pings.
    assert sorted((r.method, r.path) for r in requests) == [
        ("GET", f"/ping/{CHECK_UUID}"), ("GET", f"/ping/{CHECK_UUID}/start"), ("POST", f"/hooks/{HOOK_SECRET}"),
    ]
    pings = [r.path for r in requests if r.method == "GET"]
    assert pings == [f"/ping/{CHECK_UUID}/start", f"/ping/{CHECK_UUID}"]  # start first, then the result
    (post,) = [r for r in requests if r.method == "POST"]
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Content-Type"] == "application/json"
    body = post.json()
    audit = list(read_records(tmp_path / "log" / "audit.jsonl"))
    finished = next(r for r in audit if r["event"] == "run.finished")
    assert sorted(body) == sorted(
        ["event", "result", "host", "run_id", "policies", "started_at", "finished_at", "duration_s", "counts", "errors"]
    )
    assert body["event"] == "run.finished"
    assert body["result"] == "success"
    assert body["host"] == socket.gethostname()
    assert body["run_id"] == finished["run_id"]
    assert body["policies"] == ["ci"]
    started = datetime.fromisoformat(body["started_at"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(body["finished_at"].replace("Z", "+00:00"))
    assert NOW - timedelta(minutes=5) < started <= ended < NOW + timedelta(minutes=5)
    assert isinstance(body["duration_s"], float) and 0 <= body["duration_s"] < 120
    assert body["counts"] == {
        "planned": 18, "deleted": 18, "failed": 0, "skipped": 0, "bytes_freed": finished["bytes_freed"],
    }
    assert body["counts"]["bytes_freed"] > 0
    assert body["errors"] == []
    assert_no_secret(completed.stdout, completed.stderr, (tmp_path / "log" / "audit.jsonl").read_text())


def test_refused_run_exits_1_and_sends_failure_with_the_reason_and_a_fail_ping(
    home: Path, write_config: Callable[..., Path]
) -> None:
    versions(home, 6)
    with Receiver() as receiver:
        config = write_config('[[retention]]\nname = "ci"\nkeep_last = 1\nmax_delete_per_run = 2\n' + notify_block(receiver.url))
        completed = run_cli("apply", "--config", str(config))
        assert completed.returncode == EXIT_ACTIONS_FAILED, completed.stderr
        requests = receiver.wait_for(3)
    assert sorted(r.path for r in requests if r.method == "GET") == [f"/ping/{CHECK_UUID}/fail", f"/ping/{CHECK_UUID}/start"]
    (body,) = [r.json() for r in requests if r.method == "POST"]
    assert body["result"] == "failure" and body["event"] == "run.finished"
    assert len(body["errors"]) == 1 and "max_delete_per_run 2" in body["errors"][0] and body["errors"][0].startswith("policy ci: ")


def test_dead_receiver_is_logged_with_the_url_redacted_and_the_exit_code_unchanged(
    home: Path, write_config: Callable[..., Path]
) -> None:
    versions(home, 4)
    base = dead_url()
    config = write_config('[[retention]]\nname = "ci"\nkeep_last = 2\n' + notify_block(base))
    completed = run_cli("apply", "--config", str(config))
    assert completed.returncode == EXIT_OK
    warnings = [json.loads(line) for line in completed.stderr.splitlines() if '"notify.failed"' in line]
    assert {w["url"] for w in warnings} == {describe_url(base + "/x")}
    assert all(w["level"] == "warning" and w["error"] == "ConnectError" for w in warnings) and len(warnings) == 3
    assert_no_secret(completed.stdout, completed.stderr)


def test_slow_receiver_does_not_delay_the_run_beyond_the_timeout(home: Path, write_config: Callable[..., Path]) -> None:
    versions(home, 4)
    with Receiver(delay_seconds=8, drip=True) as receiver:
        quiet = write_config('[[retention]]\nname = "ci"\nkeep_last = 2\n')
        started = time.monotonic()
        assert run_cli("apply", "--config", str(quiet)).returncode == EXIT_OK
        baseline = time.monotonic() - started
        versions(home, 4, name="wine")
        config = write_config('[[retention]]\nname = "ci"\nkeep_last = 2\n' + notify_block(receiver.url, timeout="1s"))
        started = time.monotonic()
        completed = run_cli("apply", "--config", str(config))
        elapsed = time.monotonic() - started
    assert completed.returncode == EXIT_OK
    assert elapsed < baseline + 1 + 3, (elapsed, baseline)  # 1 s timeout, generous slack on a loaded machine, not 8 s
    assert '"notify.failed"' in completed.stderr


def test_busy_store_sends_nothing_and_exits_75(home: Path, write_config: Callable[..., Path]) -> None:
    versions(home, 4)
    with Receiver() as receiver:
        config = write_config('[[retention]]\nname = "ci"\nkeep_last = 2\n' + notify_block(receiver.url))
        with Store(home).locked():
            completed = run_cli("apply", "--config", str(config))
        time.sleep(0.3)
    assert completed.returncode == EXIT_BUSY
    assert receiver.requests == []


def test_a_run_that_cannot_start_sends_run_failed(home: Path, write_config: Callable[..., Path], tmp_path: Path) -> None:
    versions(home, 4)
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "audit.jsonl").mkdir()  # the audit log cannot be opened: nothing acts
    with Receiver() as receiver:
        config = write_config('[[retention]]\nname = "ci"\nkeep_last = 2\n' + notify_block(receiver.url))
        completed = run_cli("apply", "--config", str(config))
        requests = receiver.wait_for(2)
    assert completed.returncode == EXIT_ACTIONS_FAILED
    assert [r.path for r in requests if r.method == "GET"] == [f"/ping/{CHECK_UUID}/fail"]
    (body,) = [r.json() for r in requests if r.method == "POST"]
    assert body["event"] == "run.failed" and body["result"] == "failure" and body["run_id"] is None
    assert body["counts"] == {"planned": 0, "deleted": 0, "failed": 0, "skipped": 0, "bytes_freed": 0}
    assert "cannot open the audit log" in body["errors"][0]


def _summary(planned: int, failed: int = 0) -> RunSummary:
    figures = {"nights": PolicyFigures(actions_planned=planned, actions_ok=planned - failed, actions_failed=failed)}
    return RunSummary("run.finished", "abc", ["nights"], NOW, NOW, figures, {"nights": "failed" if failed else "ok"}, [])


def test_daemon_runs_with_nothing_to_do_only_ping_unless_every_run(tmp_path: Path) -> None:
    with Receiver() as receiver:
        section = NotifySection(webhook_url=f"{receiver.url}/hook", healthchecks_url=f"{receiver.url}/hc", timeout="5s")
        RunNotifier(section, daemon=True).finished(_summary(0))
        assert [r.path for r in receiver.wait_for(1)] == ["/hc"]
        RunNotifier(section, daemon=True).finished(_summary(2, failed=1))
        assert sorted(r.path for r in receiver.wait_for(3)[1:]) == ["/hc/fail", "/hook"]
        every = NotifySection(webhook_url=f"{receiver.url}/hook", every_run=True)
        RunNotifier(every, daemon=True).finished(_summary(0))
        assert receiver.wait_for(4)[3].path == "/hook"


def test_apprise_sends_one_short_message_per_run(home: Path, write_config: Callable[..., Path]) -> None:
    pytest.importorskip("apprise")
    versions(home, 5)
    with Receiver() as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        config = write_config(
            '[[retention]]\nname = "ci"\nkeep_last = 2\n'
            f'[notify]\napprise_urls = ["json://127.0.0.1:{port}/apprise/{HOOK_SECRET}"]\ntimeout = "5s"\n'
        )
        completed = run_cli("apply", "--config", str(config))
        (request,) = receiver.wait_for(1)
        time.sleep(0.2)
    assert completed.returncode == EXIT_OK and len(receiver.requests) == 1
    message = request.json()
    assert message["type"] == "success" and message["title"] == f"retentiond on {socket.gethostname()}: success"
    assert message["message"].startswith("run.finished ") and "3 done, 0 failed, 0 skipped of 3 planned" in message["message"]
    assert_no_secret(completed.stdout, completed.stderr)


def test_apprise_urls_without_apprise_installed_is_a_config_error(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from daemon.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "apprise" else real(name, *a))
    config = write_config(f'[notify]\napprise_urls = ["json://127.0.0.1:9/{HOOK_SECRET}"]\n')
    with pytest.raises(ConfigError, match=r"notify.apprise_urls: .*pip install 'retentiond\[apprise\]'") as raised:
        load_config(str(config))
    assert HOOK_SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pass@hooks.example.com/services/T0/B0/XYZ?token=abc#f", "https://hooks.example.com/…"),
        ("https://hc-ping.com/5d6e2b0c-9f1a-4c3e-8a7b-0123456789ab", "https://hc-ping.com/…"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:9/x", "http://[::1]:9/…"),
        ("not a url", "…"),
    ],
)
def test_urls_are_shown_as_scheme_host_and_port_only(url: str, shown: str) -> None:
    assert describe_url(url) == shown


def test_invalid_notify_values_are_config_errors_that_print_no_secret(write_config: Callable[..., Path]) -> None:
    from daemon.errors import ConfigError

    for block, message in (
        (f'webhook_url = "ftp://x/{HOOK_SECRET}"', "notify.webhook_url: expected an http:// or https:// URL"),
        ('webhook_url = "https://h/x"\ntimeout = "2m"', "notify.timeout: timeout must be more than 0 and at most 60s"),
        (f'webhook_headers = {{ Authorization = "{TOKEN}" }}', "webhook_headers is set but webhook_url is not"),
        ('webhook_url = "https://h/x"\nwebhook_headers = { "Bad Name" = "v" }', "is not an HTTP header name"),
    ):
        with pytest.raises(ConfigError, match=message) as raised:
            load_config(str(write_config(f"[notify]\n{block}\n")))
        assert_no_secret(str(raised.value))
