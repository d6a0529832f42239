"""The stand-in API server judged by lightkube itself: if lightkube can use it, the provider's tests mean something."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import ApiError, Client, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import Event, Namespace
from lightkube.types import PatchType

from tests.k8s_server import KubeServer, merge_patch, parse_selector

TOKEN = "stand-in-token-42"
ScaledObject = create_namespaced_resource("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects")


@pytest.fixture
def server() -> Iterator[KubeServer]:
    with KubeServer(token=TOKEN, watchdog_seconds=60) as kube:
        kube.add("staging", "deployment", "iris", replicas=3, labels={"team": "ml", "tier": "web"})
        kube.add("staging", "deployment", "mnist", replicas=1, labels={"team": "cv"})
        kube.add("staging", "statefulset", "db", replicas=2)
        kube.add("prod", "deployment", "api", replicas=4, labels={"team": "ml"})
        yield kube


def client_for(server: KubeServer, tmp_path: Path, token: str = TOKEN) -> Client:
    kubeconfig = server.write_kubeconfig(tmp_path / f"kubeconfig-{token}", token=token)
    return Client(KubeConfig.from_file(kubeconfig), field_manager="retentiond")


def test_lists_within_and_across_namespaces_with_selectors_and_pages(server: KubeServer, tmp_path: Path) -> None:
    client = client_for(server, tmp_path)
    assert sorted(n.metadata.name for n in client.list(Namespace)) == ["prod", "staging"]
    assert [d.metadata.name for d in client.list(Deployment, namespace="staging")] == ["iris", "mnist"]
    assert sorted(d.metadata.name for d in client.list(Deployment, namespace="*")) == ["api", "iris", "mnist"]
    assert [s.spec.replicas for s in client.list(StatefulSet, namespace="staging")] == [2]
    assert [d.metadata.name for d in client.list(Deployment, namespace="*", labels={"team": "ml", "tier": "web"})] == ["iris"]
    # One item per page: lightkube follows `continue` to the end.
    assert sorted(d.metadata.name for d in client.list(Deployment, namespace="*", chunk_size=1)) == ["api", "iris", "mnist"]
    limits = [r.query.get("limit") for r in server.requests if r.path == "/apis/apps/v1/deployments"]
    assert limits[-3:] == ["1", "1", "1"]


def test_selector_grammar() -> None:
    labels = {"team": "ml", "tier": "web"}
    assert parse_selector("team=ml,tier in (web, api),!gpu,team!=cv")(labels)
    assert not parse_selector("tier notin (web)")(labels)
    assert not parse_selector("gpu")(labels)
    with pytest.raises(ValueError):
        parse_selector("team=ml,=")


def test_merge_patch_is_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": [1]}
    assert merge_patch(target, {"a": {"b": None, "e": 3}, "d": [2]}) == {"a": {"c": 2, "e": 3}, "d": [2]}


def test_patch_with_a_stale_resource_version_is_a_409_and_a_fresh_one_applies(server: KubeServer, tmp_path: Path) -> None:
    client = client_for(server, tmp_path)
    current = client.get(Deployment, "iris", namespace="staging")
    patch = {"metadata": {"resourceVersion": current.metadata.resourceVersion, "annotations": {"x": "1"}}, "spec": {"replicas": 0}}
    server.scale("staging", "deployment", "iris", 5)  # someone else writes in between
    with pytest.raises(ApiError) as conflict:
        client.patch(Deployment, "iris", patch, namespace="staging", patch_type=PatchType.MERGE)
    assert conflict.value.status.code == 409 and conflict.value.status.reason == "Conflict"
    fresh = client.get(Deployment, "iris", namespace="staging")
    patch["metadata"]["resourceVersion"] = fresh.metadata.resourceVersion
    patched = client.patch(Deployment, "iris", patch, namespace="staging", patch_type=PatchType.MERGE)
    assert patched.spec.replicas == 0 and patched.metadata.annotations == {"x": "1"}
    assert int(patched.metadata.resourceVersion) > int(fresh.metadata.resourceVersion)
    managers = {(e.manager, e.subresource) for e in patched.metadata.managedFields}
    assert ("retentiond", None) in managers and ("kubectl", "scale") in managers
    last = server.requests[-1]
    assert (last.method, last.content_type, last.query) == ("PATCH", "application/merge-patch+json", {"fieldManager": "retentiond"})


def test_null_in_a_merge_patch_removes_the_annotation(server: KubeServer, tmp_path: Path) -> None:
    client = client_for(server, tmp_path)
    server.annotate("staging", "deployment", "iris", "retentiond/original-replicas", "3")
    patched = client.patch(Deployment, "iris", {"metadata": {"annotations": {"retentiond/original-replicas": None}}},
                           namespace="staging", patch_type=PatchType.MERGE)
    assert "retentiond/original-replicas" not in (patched.metadata.annotations or {})


def test_wrong_token_is_401_and_missing_object_404(server: KubeServer, tmp_path: Path) -> None:
    with pytest.raises(ApiError) as unauthorized:
        list(client_for(server, tmp_path, token="wrong").list(Deployment, namespace="staging"))
    assert unauthorized.value.status.code == 401
    assert not server.requests[-1].authorized
    with pytest.raises(ApiError) as missing:
        client_for(server, tmp_path).get(Deployment, "nope", namespace="staging")
    assert missing.value.status.code == 404


def test_delete_then_delete_again_is_404(server: KubeServer, tmp_path: Path) -> None:
    client = client_for(server, tmp_path)
    client.delete(Deployment, "mnist", namespace="staging")
    assert "staging/deployment/mnist" not in server.replicas()
    with pytest.raises(ApiError) as gone:
        client.delete(Deployment, "mnist", namespace="staging")
    assert gone.value.status.code == 404


def test_scaled_objects_list_or_404_without_keda_and_events_are_created(server: KubeServer, tmp_path: Path) -> None:
    client = client_for(server, tmp_path)
    server.add_scaled_object("staging", "iris-scaler", "iris")
    (scaled,) = client.list(ScaledObject, namespace="staging")
    assert scaled["spec"]["scaleTargetRef"] == {"name": "iris"}
    server.keda_installed = False
    with pytest.raises(ApiError) as absent:
        list(client.list(ScaledObject, namespace="staging"))
    assert absent.value.status.code == 404
    created = client.create(Event(
        metadata=ObjectMeta(generateName="iris.", namespace="staging"),
        involvedObject=ObjectReference(kind="Deployment", name="iris", namespace="staging"), reason="Test",
    ), namespace="staging")
    assert created.metadata.name.startswith("iris.") and server.events[0]["reason"] == "Test"


def test_injected_faults_match_method_and_path(server: KubeServer, tmp_path: Path) -> None:
    client = client_for(server, tmp_path)
    server.fail("GET", r"/apis/apps/v1/namespaces/prod/.*", 403, times=None)
    with pytest.raises(ApiError) as forbidden:
        list(client.list(Deployment, namespace="prod"))
    assert forbidden.value.status.code == 403
    assert [d.metadata.name for d in client.list(Deployment, namespace="staging")] == ["iris", "mnist"]
    server.fail("*", r".*/iris", 500, times=1)
    with pytest.raises(ApiError):
        client.get(Deployment, "iris", namespace="staging")
    assert client.get(Deployment, "iris", namespace="staging").spec.replicas == 3
