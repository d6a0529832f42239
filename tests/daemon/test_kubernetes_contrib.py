"""contrib/kubernetes/ and the commented example in config.example.toml cannot rot: they are parsed and checked here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from lightkube import Client

from daemon.config import load_config
from daemon.provider_config import KubernetesProviderConfig
from daemon.providers.kubernetes import KubernetesProvider
from daemon.providers.kubernetes_credentials import load_kube_config
from tests.k8s_server import KubeServer

REPO = Path(__file__).resolve().parents[2]
CONTRIB = REPO / "contrib" / "kubernetes"
Grant = tuple[str, str, str]  # (API group, resource, verb)


def documents(name: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all((CONTRIB / name).read_text()) if document]


def grants(role: dict[str, Any]) -> set[Grant]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def grant_of(method: str, path: str) -> Grant:
    """Given a request the provider made, return what RBAC must allow for it."""
    match = re.fullmatch(r"/(?:api/v1|apis/([^/]+)/[^/]+)(?:/namespaces/[^/]+)?/([^/]+)(/[^/]+)?", path)
    assert match, path
    group, resource, named = match.groups()
    verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "GET": "get" if named else "list"}[method]
    return group or "", resource, verb


@pytest.fixture
def used(tmp_path: Path) -> Iterator[set[Grant]]:
    """Every grant the provider needs for everything it does: list, terminate, restart, delete, events."""
    with KubeServer(token="t") as server:
        server.add("staging", "deployment", "iris", replicas=2)
        server.add("staging", "statefulset", "db", replicas=1)
        single, _ = load_kube_config(str(server.write_kubeconfig(tmp_path / "kubeconfig")), "", {})
        client = Client(single, timeout=httpx2.Timeout(5), field_manager="retentiond")
        with KubernetesProvider(name="k8s", client=client, server=server.url, sleep=lambda _: None) as provider:
            provider.list()
            provider.terminate("staging/deployment/iris")
            provider.restart("staging/deployment/iris")
            provider.terminate("staging/statefulset/db")
            provider.delete("staging/statefulset/db")
        yield {grant_of(r.method, r.path) for r in server.requests}


def test_every_manifest_parses_as_kubernetes_objects() -> None:
    for path in sorted(CONTRIB.glob("*.yaml")):
        for document in documents(path.name):
            assert {"apiVersion", "kind", "metadata"} <= set(document), path


def test_the_cluster_role_grants_exactly_what_the_provider_uses(used: set[Grant]) -> None:
    (role,) = [d for d in documents("rbac-cluster.yaml") if d["kind"] == "ClusterRole"]
    assert ("keda.sh", "scaledobjects", "list") in used and ("", "events", "create") in used
    assert grants(role) == used | {("apps", verb_resource, verb) for verb_resource in ("deployments", "statefulsets")
                                   for verb in ("list", "get", "patch", "delete")}


def test_the_namespaced_role_grants_the_same_but_listing_namespaces(used: set[Grant]) -> None:
    (role,) = [d for d in documents("rbac-namespaced.yaml") if d["kind"] == "Role"]
    (cluster_role,) = [d for d in documents("rbac-cluster.yaml") if d["kind"] == "ClusterRole"]
    assert grants(role) == grants(cluster_role) - {("", "namespaces", "list")}
    (binding,) = [d for d in documents("rbac-namespaced.yaml") if d["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]


def test_the_bindings_name_the_service_account_the_deployment_runs_as() -> None:
    (account,) = [d for d in documents("rbac-cluster.yaml") if d["kind"] == "ServiceAccount"]
    (binding,) = [d for d in documents("rbac-cluster.yaml") if d["kind"] == "ClusterRoleBinding"]
    (deployment,) = [d for d in documents("deployment.yaml") if d["kind"] == "Deployment"]
    subject = binding["subjects"][0]
    assert (subject["name"], subject["namespace"]) == (account["metadata"]["name"], account["metadata"]["namespace"])
    assert deployment["metadata"]["namespace"] == account["metadata"]["namespace"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_the_deployment_runs_one_replica_never_two_at_once_with_a_config_that_loads(tmp_path: Path) -> None:
    objects = documents("deployment.yaml")
    (deployment,) = [d for d in objects if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    (config_map,) = [d for d in objects if d["kind"] == "ConfigMap"]
    path = tmp_path / "config.toml"
    path.write_text(config_map["data"]["config.toml"])
    settings = load_config(str(path)).settings
    assert isinstance(settings.providers["k8s"], KubernetesProviderConfig)
    assert settings.offhours[0].provider == "k8s"
    mounts = {m["mountPath"] for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert settings.daemon.state_dir.parent.as_posix() in mounts  # the ownership records are on the volume


def test_the_commented_kubernetes_example_in_config_example_loads(tmp_path: Path) -> None:
    text = (REPO / "config.example.toml").read_text()
    lines = text.splitlines()
    start = lines.index("# [providers.k8s]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line.removeprefix("# ").removeprefix("#"))
    path = tmp_path / "config.toml"
    path.write_text(text + "\n" + "\n".join(block) + "\n")
    settings = load_config(str(path)).settings
    k8s = settings.providers["k8s"]
    assert isinstance(k8s, KubernetesProviderConfig) and k8s.kinds == ("deployment", "statefulset")
    assert [policy.provider for policy in settings.offhours if policy.name == "k8s-nights"] == ["k8s"]
