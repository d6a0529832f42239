"""ProcessProvider against real processes: a small HTTP server stands in for ``bentoml serve``."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from daemon.provider_config import ProcessDeploymentSpec
from daemon.providers import DeploymentNotFound, ProviderError
from daemon.providers.process import ProcessProvider
from tests.helpers.waiting import free_port, get, serves, wait_until

SERVER = Path(__file__).resolve().parent.parent / "slow_server.py"

MakeProvider = Callable[..., ProcessProvider]


def server_spec(tmp_path: Path, name: str = "web", *extra: str, stop_timeout_seconds: float = 10) -> ProcessDeploymentSpec:
    port = free_port()
    return ProcessDeploymentSpec(
        name=name,
        command=[sys.executable, str(SERVER), str(port), *extra],
        log_file=tmp_path / "logs" / f"{name}.log",
        stop_timeout_seconds=stop_timeout_seconds,
        labels={"port": str(port)},
    )


def log_says(spec: ProcessDeploymentSpec, line: str) -> bool:
    assert spec.log_file is not None
    return spec.log_file.exists() and line in spec.log_file.read_text().splitlines()


def status_of(provider: ProcessProvider, name: str) -> str:
    return {deployment.name: deployment.status for deployment in provider.list()}[name]


@pytest.fixture
def make_provider(tmp_path: Path) -> Iterator[MakeProvider]:
    """Build providers over tmp_path/state; whatever they started is stopped at the end of the test."""
    providers: list[ProcessProvider] = []

    def make(*specs: ProcessDeploymentSpec) -> ProcessProvider:
        provider = ProcessProvider(name="local", deployments=specs, state_dir=tmp_path / "state")
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        for name in provider.specs:
            provider.terminate(name)


def test_terminate_lets_the_request_in_flight_finish_then_restart_serves_on_the_same_port(
    tmp_path: Path, make_provider: MakeProvider
) -> None:
    spec = server_spec(tmp_path)
    port = int(spec.labels["port"])
    provider = make_provider(spec)
    provider.restart("web")
    wait_until(lambda: serves(port))
    first = provider.list()[0]
    assert (first.status, first.labels, first.provider) == ("running", {"port": str(port)}, "local")
    pid = int(first.identity.split(":")[0])
    assert first.created_at is not None and abs(first.created_at.timestamp() - psutil.Process(pid).create_time()) < 1.5

    answers: list[tuple[int, str]] = []
    request = threading.Thread(target=lambda: answers.append(get(port, "/slow?seconds=1.5")))
    request.start()
    wait_until(lambda: log_says(spec, "begin /slow"))
    started = time.monotonic()
    provider.terminate("web")
    request.join(timeout=10)

    assert answers == [(200, "done /slow\n")]
    assert 1.0 < time.monotonic() - started < 8, "terminate returned before the server had finished"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert log_says(spec, "stopped")
    terminated = provider.list()[0]
    assert (terminated.status, terminated.identity, terminated.created_at) == ("terminated", first.identity, first.created_at)

    provider.restart("web")
    wait_until(lambda: serves(port))
    assert get(port, "/again") == (200, "done /again\n")
    again = provider.list()[0]
    assert again.status == "running" and again.identity != first.identity


def test_a_reused_pid_is_never_signalled_and_counts_as_terminated(tmp_path: Path, make_provider: MakeProvider) -> None:
    spec = server_spec(tmp_path)
    provider = make_provider(spec)
    provider.restart("web")
    state = json.loads(provider.state_path.read_text())
    record = state["processes"]["web"]
    real_create_time = record["create_time"]
    # The same pid, but a process that started a minute earlier: to us, another program.
    record["create_time"] = real_create_time - 60
    provider.state_path.write_text(json.dumps(state))
    process = psutil.Process(record["pid"])

    assert status_of(provider, "web") == "terminated"
    provider.terminate("web")
    provider.delete("web")
    assert process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    assert not log_says(spec, "stopped")

    state["processes"]["web"]["create_time"] = real_create_time
    state["deleted"] = []
    provider.state_path.write_text(json.dumps(state))
    provider.terminate("web")
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def test_a_child_that_ignores_sigterm_is_killed_after_stop_timeout(tmp_path: Path, make_provider: MakeProvider) -> None:
    spec = server_spec(tmp_path, "stubborn", "--ignore-sigterm", "--lifetime", "60", stop_timeout_seconds=0.5)
    provider = make_provider(spec)
    provider.restart("stubborn")
    wait_until(lambda: log_says(spec, "ready"))
    pid = int(provider.list()[0].identity.split(":")[0])

    started = time.monotonic()
    provider.terminate("stubborn")

    assert 0.4 < time.monotonic() - started < 5
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not log_says(spec, "stopped"), "it was killed, it did not shut down"
    assert status_of(provider, "stubborn") == "terminated"


def test_terminate_also_stops_processes_the_deployment_forked(tmp_path: Path, make_provider: MakeProvider) -> None:
    worker_pid_file = tmp_path / "worker.pid"
    forking = (
        "import subprocess, sys, time; "
        "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(worker_pid_file)!r}, 'w').write(str(worker.pid)); time.sleep(60)"
    )
    provider = make_provider(ProcessDeploymentSpec(name="forking", command=[sys.executable, "-c", forking], stop_timeout_seconds=5))
    provider.restart("forking")
    wait_until(lambda: worker_pid_file.exists() and worker_pid_file.read_text() != "")
    worker = psutil.Process(int(worker_pid_file.read_text()))

    provider.terminate("forking")

    worker.wait(timeout=5)
    assert status_of(provider, "forking") == "terminated"


def test_terminate_restart_and_delete_are_idempotent(tmp_path: Path, make_provider: MakeProvider) -> None:
    spec = server_spec(tmp_path)
    provider = make_provider(spec)
    never_started = provider.list()[0]
    assert (never_started.status, never_started.identity, never_started.created_at) == ("terminated", "", None)
    provider.terminate("web")

    provider.restart("web")
    identity = provider.list()[0].identity
    provider.restart("web")
    assert provider.list()[0].identity == identity
    assert sum(1 for process in psutil.process_iter(["cmdline"]) if process.info["cmdline"] == spec.command) == 1

    provider.terminate("web")
    provider.terminate("web")
    assert status_of(provider, "web") == "terminated"

    provider.delete("web")
    provider.delete("web")
    assert provider.list() == []
    assert json.loads(provider.state_path.read_text()) == {"processes": {}, "deleted": ["web"]}

    provider.restart("web")
    assert status_of(provider, "web") == "running"
    provider.delete("web")
    assert provider.list() == []
    provider.delete("never-declared")


def test_unknown_names_and_commands_that_die_at_once_raise(tmp_path: Path, make_provider: MakeProvider) -> None:
    failing = ProcessDeploymentSpec(name="broken", command=[sys.executable, "-c", "import sys; sys.exit(3)"])
    missing = ProcessDeploymentSpec(name="missing", command=[str(tmp_path / "no-such-program")])
    provider = make_provider(failing, missing)

    with pytest.raises(DeploymentNotFound):
        provider.terminate("nobody")
    with pytest.raises(DeploymentNotFound):
        provider.restart("nobody")
    with pytest.raises(ProviderError, match="exited at once with code 3"):
        provider.restart("broken")
    with pytest.raises(ProviderError, match="cannot start missing"):
        provider.restart("missing")
    assert {deployment.name: deployment.status for deployment in provider.list()} == {"broken": "terminated", "missing": "terminated"}


def test_a_second_provider_instance_sees_the_recorded_process(tmp_path: Path, make_provider: MakeProvider) -> None:
    spec = server_spec(tmp_path)
    make_provider(spec).restart("web")
    successor = make_provider(spec)

    assert status_of(successor, "web") == "running"
    successor.terminate("web")
    assert status_of(successor, "web") == "terminated"


def test_spec_rejects_unknown_keys_and_unsafe_names() -> None:
    with pytest.raises(ValueError, match="extra"):
        ProcessDeploymentSpec.model_validate({"name": "web", "command": ["true"], "shell": True})
    with pytest.raises(ValueError, match="pattern"):
        ProcessDeploymentSpec(name="../web", command=["true"])
    with pytest.raises(ProviderError, match="declared twice"):
        ProcessProvider(name="local", deployments=[ProcessDeploymentSpec(name="a", command=["true"])] * 2, state_dir=Path("/nonexistent"))
