"""Off-hours on Kubernetes through the real CLI (subprocesses) against the stand-in API server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.audit import read_records
from daemon.ownership import OwnershipFile
from tests.helpers.imports import imported_by
from tests.k8s_server import KubeServer

TOKEN = "k8s-e2e-token-0123456789"
ANNOTATION = "retentiond/original-replicas"
WEEKDAY_NIGHTS = "Mon-Fri 20:00-07:00 Europe/Berlin"


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    with KubeServer(token=TOKEN, watchdog_seconds=120) as server:
        server.add("staging", "deployment", "iris", replicas=3)
        server.add("staging", "statefulset", "db", replicas=2)
        server.add("staging", "deployment", "autoscaled", replicas=2)
        server.add_scaled_object("staging", "autoscaled-scaler", "autoscaled")
        server.add("prod", "deployment", "api", replicas=4)
        yield server


@pytest.fixture
def k8s_config(write_config: Callable[..., Path], kube: KubeServer, tmp_path: Path) -> Callable[..., Path]:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")

    def write(downtime: str, match: str = "staging/*") -> Path:
        return write_config(
            f'[providers.k8s]\ntype = "kubernetes"\nkubeconfig = "{kubeconfig}"\ntimeout = "5s"\n'
            f'[[offhours]]\nname = "nights"\nprovider = "k8s"\nmatch = ["{match}"]\ndowntime = "{downtime}"\n'
            'grace_period = "15m"\n'
        )

    return write


def retentiond(config: Path, *arguments: str) -> tuple[int, Any, str]:
    """Run the CLI in a subprocess; return (exit code, the JSON it printed or its text, stderr)."""
    result = subprocess.run([sys.executable, "-m", "daemon", *arguments, "--config", str(config)],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ))
    try:
        output: Any = json.loads(result.stdout)
    except ValueError:
        output = result.stdout
    return result.returncode, output, result.stderr


def verdicts(result: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return sorted((a["action"], a["name"], a.get("outcome")) for a in result["actions"])


def kept_reasons(result: dict[str, Any], name: str) -> list[str]:
    return [reason for kept in result["kept"] if kept["name"] == name for reason in kept["reasons"]]


def deployment_events(tmp_path: Path) -> list[tuple[str, str]]:
    return [(r["event"], r.get("name", "")) for r in read_records(tmp_path / "log" / "audit.jsonl") if r["event"].startswith("deployment.")]


def test_offhours_scales_down_respects_a_hand_scale_up_and_restores_the_counts(
    kube: KubeServer, k8s_config: Callable[..., Path], tmp_path: Path
) -> None:
    # plan --at a weekday night: what apply would do then, and nothing written.
    code, plan, stderr = retentiond(k8s_config(WEEKDAY_NIGHTS), "plan", "--json", "--at", "2026-11-25T22:00:00+01:00")
    assert code == 0, stderr
    assert verdicts(plan) == [("terminate", "staging/deployment/iris", None), ("terminate", "staging/statefulset/db", None)]
    assert kept_reasons(plan, "staging/deployment/autoscaled") == ["scaled by KEDA ScaledObject staging/autoscaled-scaler; left alone"]
    assert not [r for r in kube.requests if r.method != "GET"]

    inside = k8s_config("always")
    code, result, stderr = retentiond(inside, "apply", "--json")
    assert code == 0, stderr
    assert verdicts(result) == [("terminate", "staging/deployment/iris", "ok"), ("terminate", "staging/statefulset/db", "ok")]
    assert kube.replicas() == {"prod/deployment/api": 4, "staging/deployment/autoscaled": 2,
                               "staging/deployment/iris": 0, "staging/statefulset/db": 0}
    assert kube.get("staging", "deployment", "iris")["metadata"]["annotations"][ANNOTATION] == "3"
    assert kube.get("staging", "statefulset", "db")["metadata"]["annotations"][ANNOTATION] == "2"
    records = OwnershipFile(tmp_path / "state").load().records
    assert sorted(records) == [("k8s", "staging/deployment/iris"), ("k8s", "staging/statefulset/db")]

    # Someone needs iris tonight: the next run in the same downtime leaves it up.
    kube.scale("staging", "deployment", "iris", 1)
    code, result, stderr = retentiond(inside, "apply", "--json")
    assert code == 0, stderr
    assert result["actions"] == []
    assert kept_reasons(result, "staging/deployment/iris")[0].startswith("started by hand during this downtime")
    assert kube.replicas()["staging/deployment/iris"] == 1

    # The window is over: exactly what we scaled down comes back, to exactly its count.
    code, result, stderr = retentiond(k8s_config("never"), "apply", "--json")
    assert code == 0, stderr
    assert verdicts(result) == [("restart", "staging/statefulset/db", "ok")]
    db = kube.get("staging", "statefulset", "db")
    assert db["spec"]["replicas"] == 2 and ANNOTATION not in db["metadata"]["annotations"]
    assert kube.replicas() == {"prod/deployment/api": 4, "staging/deployment/autoscaled": 2,
                               "staging/deployment/iris": 1, "staging/statefulset/db": 2}
    # A batch's intents are written (and fsynced) before any of its actions.
    assert deployment_events(tmp_path) == [
        ("deployment.terminate_intended", "staging/deployment/iris"), ("deployment.terminate_intended", "staging/statefulset/db"),
        ("deployment.terminated", "staging/deployment/iris"), ("deployment.terminated", "staging/statefulset/db"),
        ("deployment.restart_intended", "staging/statefulset/db"), ("deployment.restarted", "staging/statefulset/db"),
    ]
    assert [e["reason"] for e in kube.events] == ["RetentiondTerminated", "RetentiondTerminated", "RetentiondRestarted"]
    writes = {(r.method, r.query.get("fieldManager")) for r in kube.requests if r.method == "PATCH"}
    assert writes == {("PATCH", "retentiond")}


def test_restart_without_the_recorded_count_exits_1_and_says_so(
    kube: KubeServer, k8s_config: Callable[..., Path], tmp_path: Path
) -> None:
    code, _, stderr = retentiond(k8s_config("always"), "apply", "--json")
    assert code == 0, stderr
    kube.annotate("staging", "deployment", "iris", ANNOTATION, None)  # someone "tidied up"
    code, result, _ = retentiond(k8s_config("never"), "apply", "--json")
    assert code == 1
    failed = [a for a in result["actions"] if a["outcome"] == "failed"]
    assert [(a["action"], a["name"]) for a in failed] == [("restart", "staging/deployment/iris")]
    assert "is at 0 replicas but its annotation retentiond/original-replicas" in failed[0]["error"]
    assert "NOT restarted" in failed[0]["error"]
    assert kube.replicas()["staging/deployment/iris"] == 0 and kube.replicas()["staging/statefulset/db"] == 2
    assert ("deployment.restart_failed", "staging/deployment/iris") in deployment_events(tmp_path)
    # The record stays: every later run says it again until someone acts.
    assert ("k8s", "staging/deployment/iris") in OwnershipFile(tmp_path / "state").load().records


def test_a_forbidden_namespace_is_a_warning_and_the_rest_is_acted_on(
    kube: KubeServer, k8s_config: Callable[..., Path]
) -> None:
    kube.add("team-b", "deployment", "secret", replicas=2)
    kube.fail("GET", r"/apis/apps/v1/namespaces/team-b/.*", 403, times=None)
    code, result, stderr = retentiond(k8s_config("always", match="*"), "apply", "--json")
    assert code == 0, stderr
    assert [w for w in result["warnings"] if "namespace team-b" in w and "403" in w]
    assert ("terminate", "staging/deployment/iris", "ok") in verdicts(result)
    assert kube.replicas()["team-b/deployment/secret"] == 2


def test_without_lightkube_the_config_error_names_the_provider_and_the_extra(k8s_config: Callable[..., Path]) -> None:
    blocked = "import sys; sys.modules['lightkube'] = None; from daemon.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", blocked, "plan", "--config", str(k8s_config("always"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert "providers.k8s" in result.stderr and "pip install 'retentiond[kubernetes]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("extra", "message"), [
    ('kubeconfig = "/nonexistent/kubeconfig"\n', "kubeconfig /nonexistent/kubeconfig does not exist"),
    ('context = "elsewhere"\n', "context 'elsewhere'"),
])
def test_unusable_credentials_are_a_config_error(
    write_config: Callable[..., Path], kube: KubeServer, tmp_path: Path, extra: str, message: str
) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    provider = f'[providers.k8s]\ntype = "kubernetes"\nkubeconfig = "{kubeconfig}"\n'
    if extra.startswith("kubeconfig"):
        provider = '[providers.k8s]\ntype = "kubernetes"\n'
    config = write_config(provider + extra + '[[offhours]]\nname = "nights"\nprovider = "k8s"\ndowntime = "always"\n')
    code, _, stderr = retentiond(config, "plan")
    assert code == 78 and "providers.k8s" in stderr and message in stderr and "Traceback" not in stderr


@pytest.mark.parametrize(("extra", "key"), [
    ('namespaces = ["Staging"]\n', "providers.k8s.namespaces"),
    ('kinds = ["pod"]\n', "providers.k8s.kinds"),
    ('kinds = []\n', "providers.k8s.kinds"),
    ('namespace = "staging"\n', "providers.k8s.namespace"),
])
def test_bad_provider_keys_exit_78_naming_the_key(write_config: Callable[..., Path], extra: str, key: str) -> None:
    config = write_config('[providers.k8s]\ntype = "kubernetes"\n' + extra)
    code, _, stderr = retentiond(config, "check-config")
    assert code == 78 and key in stderr, stderr


def test_check_config_of_a_kubernetes_provider_does_not_import_the_client(k8s_config: Callable[..., Path]) -> None:
    code, heavy, _ = imported_by("check-config", "--config", str(k8s_config("always")), watched=("lightkube", "httpx2", "msgspec"))
    assert (code, heavy) == (0, [])
