"""`retentiond run` in a subprocess on a real temporary store, with a fake NOTIFY_SOCKET."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.audit import read_records, record_time
from tests.fakestore import add_model, make_home, populate
from tests.helpers.daemon_process import NOW, REPO, Daemon, serves_metrics, store_bytes, wait_for, write_config
from tests.helpers.waiting import free_port


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator:
    started: list[Daemon] = []

    def start(config: Path) -> Daemon:
        daemon = Daemon(tmp_path, config)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def test_store_grown_past_budget_is_cleaned_within_one_interval(tmp_path: Path, daemon_factory) -> None:  # type: ignore[no-untyped-def]
    home = make_home(tmp_path)
    populate(home, names=2, versions_per_name=5, now=NOW, files=2)
    budget = store_bytes(home) + 2000
    config = write_config(tmp_path, home, f'[[disk]]\nname = "budget"\nmax_store_size = "{budget}B"\ncheck_interval = "1s"\n')
    daemon = daemon_factory(config)
    messages = daemon.read_messages(until="READY=1")
    assert messages[0].startswith("READY=1")
    time.sleep(1.5)
    assert not (tmp_path / "audit.jsonl").exists() or not any(
        record["event"] == "artifact.deleted" for record in read_records(tmp_path / "audit.jsonl")
    )

    grown_at = datetime.now(timezone.utc)
    for index in range(20):
        add_model(home, "model-0000", f"grow{index:02d}", NOW - timedelta(days=30 + index), files=4, file_bytes=500)
    (home / "models" / "model-0000" / "latest").write_text((home / "models" / "model-0000" / "latest").read_text())
    assert store_bytes(home) > budget

    def deleted_records() -> list[dict]:
        path = tmp_path / "audit.jsonl"
        return [r for r in read_records(path) if r["event"] == "artifact.deleted"] if path.exists() else []

    wait_for(lambda: deleted_records() and store_bytes(home) <= budget, timeout=15)
    first_deletion = min(record_time(record) for record in deleted_records())  # type: ignore[type-var]
    reaction = (first_deletion - grown_at).total_seconds()
    print(f"over budget -> first deletion audited: {reaction:.2f}s (check interval 1s)")
    assert reaction < 1 + 5
    assert daemon.stop() == 0
    kinds = [m.split("=", 1)[0] for m in daemon.messages if m.split("=", 1)[0] in ("READY", "WATCHDOG", "STOPPING")]
    assert kinds[0] == "READY" and "WATCHDOG" in kinds and kinds[-1] == "STOPPING"
    assert kinds.index("STOPPING") > kinds.index("WATCHDOG")
    listing = subprocess.run(
        [sys.executable, "-m", "tests.bentoml_judge", "describe", str(home)], capture_output=True, text=True,
        env={**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "PYTHONPATH": str(REPO)}, cwd=REPO,
    )
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert len(json.loads(listing.stdout.splitlines()[-1])["models"]) == len(
        [d for d in (home / "models").glob("*/*") if d.is_dir()]
    )


def test_sigterm_during_a_run_finishes_the_action_and_exits_0(tmp_path: Path, daemon_factory) -> None:  # type: ignore[no-untyped-def]
    home = make_home(tmp_path)
    # Enough versions that the run is still going when SIGTERM lands (trashed versions are purged on a thread).
    populate(home, names=4, versions_per_name=1000, now=NOW, files=3)
    config = write_config(tmp_path, home, '[[disk]]\nname = "budget"\nmax_store_size = "1KB"\ncheck_interval = "1s"\n')
    daemon = daemon_factory(config)
    audit = tmp_path / "audit.jsonl"

    def run_started() -> bool:
        return audit.exists() and any(r["event"] == "artifact.delete_intended" for r in read_records(audit))

    wait_for(run_started, timeout=30, interval=0.005)
    assert daemon.stop() == 0
    events = [record["event"] for record in read_records(audit)]
    assert "run.interrupted" in events
    assert events.count("artifact.deleted") < 4 * 999  # stopped early; SIGTERM may even land before the first one
    for version_dir in (home / "models").glob("*/*"):
        if version_dir.is_dir():
            assert (version_dir / "model.yaml").exists() and len(list(version_dir.iterdir())) == 4, version_dir
    intents = {r["version"] for r in read_records(audit) if r["event"] == "artifact.delete_intended"}
    outcomes = {r["version"] for r in read_records(audit) if r["event"].startswith("artifact.") and "outcome" in r}
    assert intents == outcomes, "every intent has its outcome"


def test_sighup_with_a_broken_config_keeps_the_old_one(tmp_path: Path, daemon_factory) -> None:  # type: ignore[no-untyped-def]
    home = make_home(tmp_path)
    populate(home, names=1, versions_per_name=3, now=NOW)
    budget = store_bytes(home) + 1000
    config = write_config(tmp_path, home, f'[[disk]]\nname = "budget"\nmax_store_size = "{budget}B"\ncheck_interval = "1s"\n')
    daemon = daemon_factory(config)
    daemon.read_messages(until="READY=1")
    good = config.read_text()
    config.write_text(good + "\n[[disk]]\nname = 'broken'\nhigh_watermark = 'lots'\n")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.read_messages(until="config reload failed")
    assert "config.reload_failed" in daemon.logs() and "disk[1].high_watermark" in daemon.logs()
    config.write_text(good)  # the file is fine again, but only a new SIGHUP would read it
    for index in range(6):
        add_model(home, "model-0000", f"grow{index}", NOW - timedelta(days=40 + index), files=4, file_bytes=500)
    wait_for(lambda: store_bytes(home) <= budget, timeout=15)
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_invalid_config_at_start_exits_78(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    config = write_config(tmp_path, home, "[[disk]]\nname = 'x'\n")
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(config)], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 78
    assert "disk[0]" in result.stderr and "needs high_watermark or max_store_size" in result.stderr


def test_daemon_with_max_shrink_and_a_state_dir_it_cannot_write_exits_78(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    (tmp_path / "state").write_text("a file where the state directory should be")
    config = write_config(tmp_path, home, '[[disk]]\nname = "budget"\nmax_store_size = "1GB"\n')
    config.write_text(config.read_text().replace("[store]\n", '[store]\nmax_shrink = "50%"\n', 1))
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(config)], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 78, result.stderr
    assert f"daemon.state_dir {tmp_path / 'state'} cannot be written" in result.stderr


def test_daemon_warns_at_start_and_on_reload_about_a_retention_policy_without_schedule(
    tmp_path: Path, daemon_factory
) -> None:  # type: ignore[no-untyped-def]
    home = make_home(tmp_path)
    populate(home, names=1, versions_per_name=2, now=NOW)
    config = write_config(
        tmp_path, home,
        '[[retention]]\nname = "timer-only"\nkeep_last = 2\n[[retention]]\nname = "hourly"\nkeep_last = 2\nschedule = "0 * * * *"\n',
    )
    daemon = daemon_factory(config)
    daemon.read_messages(until="READY=1")

    def warnings() -> list[dict]:
        lines = [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == "policy.unscheduled"]

    assert [w["policy"] for w in warnings()] == ["timer-only"]
    assert "runs only with `retentiond apply`" in warnings()[0]["warning"]
    daemon.process.send_signal(signal.SIGHUP)
    daemon.read_messages(until="config reloaded")
    assert [w["policy"] for w in warnings()] == ["timer-only", "timer-only"]


def test_sighup_with_every_kind_of_bad_config_keeps_the_daemon_and_a_good_one_takes_effect(
    tmp_path: Path, daemon_factory  # type: ignore[no-untyped-def]
) -> None:
    home = make_home(tmp_path)
    populate(home, names=1, versions_per_name=2, now=NOW)
    first_port, taken_port, second_port = free_port(), free_port(), free_port()
    policy = '[[disk]]\nname = "budget"\nmax_store_size = "10GiB"\ncheck_interval = "1s"\n'
    good = write_config(tmp_path, home, f"[metrics]\nlisten_port = {first_port}\n{policy}").read_text()
    config = tmp_path / "config.toml"
    daemon = daemon_factory(config)
    daemon.read_messages(until="READY=1")
    assert serves_metrics(first_port)

    def toml(text: str) -> None:
        config.write_text(text)

    def remove() -> None:
        if config.is_dir() and not config.is_symlink():
            config.rmdir()
        elif config.exists() or config.is_symlink():
            config.unlink()

    gone = tmp_path / "gone"
    make_home(gone)
    taken = socket.socket()
    taken.bind(("127.0.0.1", taken_port))
    taken.listen()
    bad_kinds = {
        "not TOML": lambda: toml(good + "[[disk]\n"),
        "not UTF-8": lambda: config.write_bytes(good.encode() + b'\n# caf\xe9\n[metrics]\ntextfile = "/tmp/\xff"\n'),
        "a bare number for a percentage": lambda: toml(good.replace('max_store_size = "10GiB"', "high_watermark = 0.85")),
        "a zero budget": lambda: toml(good.replace("10GiB", "0B")),
        "a relative store.home": lambda: toml(good.replace(f'home = "{home}"', 'home = "bentoml"')),
        "a store.home that no longer exists": lambda: toml(good.replace(str(home), str(gone / "bentoml"))),
        "a listen_address that is no address": lambda: toml(good.replace("[metrics]\n", '[metrics]\nlisten_address = "metrics.local"\n')),
        "a metrics port in use": lambda: toml(good.replace(str(first_port), str(taken_port))),
        "the file vanished": lambda: None,
        "a directory in its place": config.mkdir,
        # Root may read any mode; a symlink loop is a file nobody can open.
        "a file nobody can open": lambda: config.symlink_to(config),
    }
    try:
        for kind, make_bad in bad_kinds.items():
            remove()
            make_bad()
            if kind == "a store.home that no longer exists":
                shutil.rmtree(gone)
            daemon.process.send_signal(signal.SIGHUP)
            daemon.read_messages(until="config reload failed", timeout=15)
            assert daemon.process.poll() is None, (kind, daemon.logs())
            assert serves_metrics(first_port), kind
    finally:
        taken.close()
    logs = daemon.logs()
    assert logs.count("config.reload_failed") == len(bad_kinds), logs
    assert "Traceback" not in logs
    for key in ("disk[0].high_watermark", "disk[0].max_store_size", "store.home", "metrics.listen_address", "metrics.listen_port"):
        assert key in logs, key

    remove()
    toml(good.replace(str(first_port), str(second_port)) + '[[retention]]\nname = "hourly"\nkeep_last = 1\nschedule = "0 * * * *"\n')
    daemon.process.send_signal(signal.SIGHUP)
    daemon.read_messages(until="STATUS=config reloaded", timeout=15)
    assert "retention:hourly" in daemon.logs()
    assert serves_metrics(second_port) and not serves_metrics(first_port)
    assert daemon.stop() == 0


def test_reload_survives_any_exception_and_keeps_the_running_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon import logs
    from daemon import service as service_module
    from daemon.notify import Notifier

    logs.configure()  # as the CLI does: events on stderr
    home = make_home(tmp_path)
    config = write_config(tmp_path, home, '[[disk]]\nname = "budget"\nmax_store_size = "10GiB"\n')
    service = service_module.Service.load(str(config), Notifier())
    service._schedule()
    running, jobs = service.settings, [job.id for job in service.scheduler.get_jobs()]
    assert jobs == ["disk:budget"]

    def broken_loader(_argument: str | None) -> None:
        raise RuntimeError("a bug in a validator")

    monkeypatch.setattr(service_module, "load_config", broken_loader)
    service.reload()
    assert service.settings is running
    assert "config.reload_failed" in capsys.readouterr().err

    # A failure after the switch (here: building a trigger) puts the running config and its jobs back.
    monkeypatch.undo()
    config.write_text(config.read_text() + '[[retention]]\nname = "hourly"\nkeep_last = 1\nschedule = "0 * * * *"\n')

    def broken_trigger(_schedule: str, _settings: object) -> None:
        raise ValueError("no trigger today")

    monkeypatch.setattr(service_module, "retention_trigger", broken_trigger)
    service.reload()
    assert service.settings is running and [job.id for job in service.scheduler.get_jobs()] == jobs
    assert "ValueError: no trigger today" in capsys.readouterr().err


def test_reload_after_the_default_config_file_vanished_keeps_it_instead_of_the_built_in_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon import logs
    from daemon import service as service_module
    from daemon.notify import Notifier

    logs.configure()
    home = make_home(tmp_path)
    config = write_config(tmp_path, home, '[[disk]]\nname = "budget"\nmax_store_size = "10GiB"\n')
    monkeypatch.setattr("daemon.config.DEFAULT_CONFIG_PATH", config)
    monkeypatch.setenv("BENTOML_HOME", str(home))  # the built-in defaults would be a valid store too
    service = service_module.Service.load(None, Notifier())
    running = service.settings
    config.unlink()
    service.reload()
    assert service.settings is running and service.settings.disk
    assert "config.reload_failed" in capsys.readouterr().err


def test_sighup_while_the_first_scan_runs_does_not_kill_the_daemon(tmp_path: Path, daemon_factory) -> None:  # type: ignore[no-untyped-def]
    home = make_home(tmp_path)
    populate(home, names=4, versions_per_name=500, now=NOW, files=1)
    config = write_config(tmp_path, home, '[[disk]]\nname = "budget"\nmax_store_size = "10GiB"\n')
    daemon = daemon_factory(config)

    def scanning() -> bool:
        # An open directory or file under the store: the start-up scan is under way, READY not yet sent.
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{daemon.process.pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{daemon.process.pid}/fd/{fd}").startswith(str(home / "models")):
                        return True
        return False

    wait_for(scanning, timeout=30, interval=0.001)
    daemon.process.send_signal(signal.SIGHUP)
    messages = daemon.read_messages(until="STATUS=config reloaded", timeout=60)
    assert messages[0].startswith("READY=1")  # the signal was taken before READY and acted on after it
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_a_storm_of_signals_while_it_works_never_ends_or_hangs_the_daemon(tmp_path: Path, daemon_factory, seed: int) -> None:  # type: ignore[no-untyped-def]
    # Reloads, signals whose default action ends a process (SIGUSR1/2) and ones it ignores, at random moments
    # while disk runs and reloads log; then SIGTERM must still stop it cleanly. Handlers only note and set:
    # one that logged could deadlock on the log's write lock, held by the main thread at that moment.
    import random

    home = make_home(tmp_path)
    populate(home, names=2, versions_per_name=30, now=NOW, files=1)
    config = write_config(tmp_path, home, '[[disk]]\nname = "budget"\nmax_store_size = "1KiB"\ncheck_interval = "1s"\n')
    daemon = daemon_factory(config)
    daemon.read_messages(until="READY=1")
    rng = random.Random(seed)
    kinds = [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD, signal.SIGPIPE]
    for _ in range(120):
        daemon.process.send_signal(rng.choice(kinds))
        time.sleep(rng.uniform(0, 0.03))
    assert daemon.process.poll() is None, daemon.logs()
    assert daemon.stop(timeout=30) == 0
    logs = daemon.logs()
    assert "Traceback" not in logs
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    ignored = {event["signal"] for event in events if event["event"] == "signal.ignored"}
    assert ignored and ignored <= {"SIGUSR1", "SIGUSR2"}
    assert [event["signal"] for event in events if event["event"] == "signal.received"] == ["SIGTERM"]
    assert events[-1]["event"] == "daemon.stopped"
