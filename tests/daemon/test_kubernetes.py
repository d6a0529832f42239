"""The kubernetes provider against the stand-in API server, through lightkube: each behaviour and each fault."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx2
import pytest
from lightkube import Client

from daemon.deployments import list_deployments
from daemon.ownership import OwnershipState
from daemon.providers import DeploymentNotFound, PartialListing, ProviderError, TransientProviderError
from daemon.providers.kubernetes import CONFLICT_ATTEMPTS, KubernetesProvider
from daemon.providers.kubernetes_credentials import load_kube_config
from daemon.providers.kubernetes_objects import ORIGINAL_REPLICAS, changed_at, parse_name
from policies import Deployment, OffhoursPolicy
from policies.model import Ownership
from policies.offhours import decide_offhours
from tests.k8s_server import EPOCH, KubeServer

TOKEN = "k8s-s3cr3t-token-0123456789"
ANNOTATION = ORIGINAL_REPLICAS
Factory = Callable[..., KubernetesProvider]


@pytest.fixture
def server() -> Iterator[KubeServer]:
    with KubeServer(token=TOKEN, watchdog_seconds=60) as kube:
        kube.add("staging", "deployment", "iris", replicas=3, labels={"team": "ml"})
        kube.add("staging", "statefulset", "db", replicas=2)
        kube.add("prod", "deployment", "api", replicas=4)
        yield kube


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_provider(server: KubeServer, tmp_path: Path, sleeps: list[float]) -> Iterator[Factory]:
    providers: list[KubernetesProvider] = []

    def make(*, token: str = TOKEN, timeout_seconds: float = 5, **options: object) -> KubernetesProvider:
        single, _ = load_kube_config(str(server.write_kubeconfig(tmp_path / "kubeconfig", token=token)), "", {})
        client = Client(single, timeout=httpx2.Timeout(timeout_seconds), field_manager="retentiond")
        provider = KubernetesProvider(name="k8s", client=client, server=server.url, timeout_seconds=timeout_seconds,
                                      sleep=sleeps.append, **options)  # type: ignore[arg-type]
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.close()


@pytest.fixture
def provider(make_provider: Factory) -> KubernetesProvider:
    return make_provider()


def writes(server: KubeServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.requests if r.method in ("PATCH", "DELETE", "PUT")]


# --- listing ------------------------------------------------------------------------------


def test_list_names_every_object_namespace_kind_name_with_status_labels_and_uid(server: KubeServer, provider: KubernetesProvider) -> None:
    server.scale("staging", "statefulset", "db", 0)
    server.annotate("staging", "deployment", "iris", "retentiond/exclude-until", "2030-01-01T00:00:00Z")
    listed = {d.name: d for d in provider.list()}
    assert sorted(listed) == ["prod/deployment/api", "staging/deployment/iris", "staging/statefulset/db"]
    iris = listed["staging/deployment/iris"]
    assert (iris.provider, iris.status, iris.identity) == ("k8s", "running", server.get("staging", "deployment", "iris")["metadata"]["uid"])
    # Labels and annotations both: the exclusion annotation reaches off-hours.
    assert iris.labels == {"team": "ml", "retentiond/exclude-until": "2030-01-01T00:00:00Z"}
    assert iris.created_at == EPOCH
    assert listed["staging/statefulset/db"].status == "terminated"


def test_updated_at_is_the_last_change_by_a_person_or_tool_not_by_controllers_or_us(
    server: KubeServer, provider: KubernetesProvider
) -> None:
    # The stand-in's objects carry a status write by kube-controller-manager from just now.
    (iris,) = [d for d in provider.list() if d.name == "staging/deployment/iris"]
    assert iris.updated_at == EPOCH
    provider.terminate("staging/deployment/iris")
    (iris,) = [d for d in provider.list() if d.name == "staging/deployment/iris"]
    assert iris.updated_at == EPOCH  # our own scaling does not restart the grace period
    server.scale("staging", "deployment", "iris", 2, manager="kube-controller-manager")  # an HPA rescaling
    assert [d.updated_at for d in provider.list() if d.name == "staging/deployment/iris"] == [EPOCH]
    before = datetime.now(timezone.utc).replace(microsecond=0)
    server.scale("staging", "deployment", "iris", 3, manager="kubectl")
    (iris,) = [d for d in provider.list() if d.name == "staging/deployment/iris"]
    assert iris.updated_at is not None and iris.updated_at >= before


def test_changed_at_ignores_status_controller_and_own_writes() -> None:
    at = [EPOCH + timedelta(hours=hour) for hour in range(5)]
    entries = [("helm", None, at[0]), ("kubectl", "scale", at[1]), ("argocd", "status", at[4]),
               ("kube-controller-manager", None, at[3]), ("retentiond", None, at[4])]
    assert changed_at(entries) == at[1]
    assert changed_at([("retentiond", None, at[2])]) is None


def test_configured_namespaces_kinds_and_selector_limit_the_listing(
    server: KubeServer, make_provider: Factory
) -> None:
    server.add("staging", "deployment", "mnist", labels={"team": "cv"})
    provider = make_provider(namespaces=("staging",), kinds=("deployment",), label_selector="team in (ml, nlp)")
    assert [d.name for d in provider.list()] == ["staging/deployment/iris"]
    assert not any(r.path == "/api/v1/namespaces" for r in server.requests)
    (listing,) = [r for r in server.requests if r.path.endswith("/deployments")]
    assert listing.query["labelSelector"] == "team in (ml, nlp)"


def test_bad_token_fails_the_whole_listing_without_showing_the_token(server: KubeServer, make_provider: Factory) -> None:
    with pytest.raises(ProviderError) as failure:
        make_provider(token="not-the-token").list()
    assert not isinstance(failure.value, PartialListing)
    assert "401" in str(failure.value) and TOKEN not in str(failure.value) and "not-the-token" not in str(failure.value)


def test_a_forbidden_namespace_is_reported_and_the_others_still_listed(server: KubeServer, provider: KubernetesProvider) -> None:
    server.fail("GET", r"/apis/apps/v1/namespaces/prod/.*", 403, times=None)
    with pytest.raises(PartialListing) as partial:
        provider.list()
    assert "namespace prod" in str(partial.value) and "403" in str(partial.value)
    assert sorted(d.name for d in partial.value.deployments) == ["staging/deployment/iris", "staging/statefulset/db"]


def test_a_partial_listing_is_decided_but_drops_no_ownership_record(server: KubeServer, provider: KubernetesProvider) -> None:
    server.fail("GET", r"/apis/apps/v1/namespaces/prod/.*", 403, times=None)
    view = list_deployments({"k8s": provider})
    assert sorted(d.name for d in view.deployments) == ["staging/deployment/iris", "staging/statefulset/db"]
    assert view.listed == [] and any("listed only in part" in w and "namespace prod" in w for w in view.warnings)
    record = Ownership("k8s", "prod/deployment/api", "nights", EPOCH, None, identity="uid-3")
    state = OwnershipState(records={("k8s", "prod/deployment/api"): record})
    assert state.observe(view.deployments, view.listed, EPOCH) == []
    assert ("k8s", "prod/deployment/api") in state.records


def test_unreadable_keda_objects_leave_the_namespace_out(server: KubeServer, provider: KubernetesProvider) -> None:
    # Fail closed: without its ScaledObjects nothing in that namespace can be decided safely.
    server.fail("GET", r"/apis/keda.sh/v1alpha1/namespaces/staging/scaledobjects", 403, times=None)
    with pytest.raises(PartialListing) as partial:
        provider.list()
    assert [d.name for d in partial.value.deployments] == ["prod/deployment/api"]


def test_keda_scaled_objects_are_left_alone_with_the_scaled_object_named(server: KubeServer, provider: KubernetesProvider) -> None:
    server.add_scaled_object("staging", "iris-scaler", "iris")
    server.add_scaled_object("staging", "db-scaler", "db", kind="StatefulSet")
    listed = {d.name: d for d in provider.list()}
    assert listed["staging/deployment/iris"].left_alone == "scaled by KEDA ScaledObject staging/iris-scaler; left alone"
    assert listed["staging/statefulset/db"].left_alone == "scaled by KEDA ScaledObject staging/db-scaler; left alone"
    assert listed["prod/deployment/api"].left_alone == ""
    with pytest.raises(ProviderError, match="KEDA ScaledObject staging/iris-scaler"):
        provider.terminate("staging/deployment/iris")
    assert writes(server) == [] and server.replicas()["staging/deployment/iris"] == 3


def test_without_keda_installed_nothing_is_keda_scaled_and_it_is_asked_once(server: KubeServer, provider: KubernetesProvider) -> None:
    server.keda_installed = False
    assert all(d.left_alone == "" for d in provider.list())
    assert len([r for r in server.requests if "scaledobjects" in r.path]) == 1


def test_offhours_keeps_a_left_alone_deployment_whatever_the_window_or_delete_after() -> None:
    policy = OffhoursPolicy(name="nights", provider="k8s", downtime="always", grace_period="0s", delete_after="1d")
    reason = "scaled by KEDA ScaledObject staging/iris-scaler; left alone"
    deployments = [Deployment("k8s", "staging/deployment/iris", "running", left_alone=reason),
                   Deployment("k8s", "staging/deployment/idle", "terminated", updated_at=EPOCH, left_alone=reason)]
    actions, kept = decide_offhours(policy, deployments, {}, EPOCH + timedelta(days=30))
    assert actions == [] and [k.reasons for k in kept] == [(reason,), (reason,)]


# --- terminate and restart ----------------------------------------------------------------


def test_terminate_is_one_guarded_write_of_zero_and_the_original_count(server: KubeServer, provider: KubernetesProvider) -> None:
    read_version = server.get("staging", "deployment", "iris")["metadata"]["resourceVersion"]
    provider.terminate("staging/deployment/iris")
    (patch,) = [r for r in server.requests if r.method == "PATCH"]
    assert patch.query == {"fieldManager": "retentiond"} and patch.content_type == "application/merge-patch+json"
    assert patch.body == {"metadata": {"resourceVersion": read_version, "annotations": {ANNOTATION: "3"}}, "spec": {"replicas": 0}}
    iris = server.get("staging", "deployment", "iris")
    assert iris["spec"]["replicas"] == 0 and iris["metadata"]["annotations"][ANNOTATION] == "3"
    provider.terminate("staging/deployment/iris")  # already at 0: nothing more is written
    assert len(writes(server)) == 1
    (event,) = server.events
    assert event["reason"] == "RetentiondTerminated" and event["involvedObject"]["uid"] == iris["metadata"]["uid"]
    assert event["involvedObject"]["kind"] == "Deployment" and event["type"] == "Normal"


def test_restart_restores_exactly_the_recorded_count_and_removes_the_annotation(
    server: KubeServer, provider: KubernetesProvider
) -> None:
    provider.terminate("staging/statefulset/db")
    provider.restart("staging/statefulset/db")
    db = server.get("staging", "statefulset", "db")
    assert db["spec"]["replicas"] == 2 and ANNOTATION not in db["metadata"]["annotations"]
    restore = [r for r in server.requests if r.method == "PATCH"][-1]
    assert restore.body["metadata"]["annotations"] == {ANNOTATION: None}
    assert restore.body["metadata"]["resourceVersion"]  # guarded too
    provider.restart("staging/statefulset/db")  # running already: nothing more is written
    assert len(writes(server)) == 2
    assert [e["reason"] for e in server.events] == ["RetentiondTerminated", "RetentiondRestarted"]


@pytest.mark.parametrize("annotation", [None, "three", "0", "-2"])
def test_restart_without_a_usable_count_fails_loudly_and_writes_nothing(
    server: KubeServer, provider: KubernetesProvider, annotation: str | None
) -> None:
    server.scale("staging", "deployment", "iris", 0)
    if annotation is not None:
        server.annotate("staging", "deployment", "iris", ANNOTATION, annotation)
    with pytest.raises(ProviderError, match=r"staging/deployment/iris is at 0 replicas .* NOT restarted"):
        provider.restart("staging/deployment/iris")
    assert writes(server) == [] and server.replicas()["staging/deployment/iris"] == 0
    assert [(e["reason"], e["type"]) for e in server.events] == [("RetentiondRestartFailed", "Warning")]


def test_a_conflict_is_read_again_and_decided_again(server: KubeServer, provider: KubernetesProvider) -> None:
    # Someone scales iris to 5 between our read and our write: the count we record must be 5, not 3.
    server.before("PATCH", r".*/deployments/iris", lambda: server.scale("staging", "deployment", "iris", 5))
    provider.terminate("staging/deployment/iris")
    assert [r.method for r in server.requests if r.method != "POST"][-4:] == ["GET", "PATCH", "GET", "PATCH"]
    iris = server.get("staging", "deployment", "iris")
    assert iris["spec"]["replicas"] == 0 and iris["metadata"]["annotations"][ANNOTATION] == "5"


def test_a_conflict_with_someone_who_scaled_it_to_zero_ends_without_a_write(server: KubeServer, provider: KubernetesProvider) -> None:
    server.before("PATCH", r".*/deployments/iris", lambda: server.scale("staging", "deployment", "iris", 0))
    provider.terminate("staging/deployment/iris")
    assert len([r for r in server.requests if r.method == "PATCH"]) == 1  # the refused one
    assert ANNOTATION not in server.get("staging", "deployment", "iris")["metadata"]["annotations"]


def test_an_object_that_keeps_changing_is_given_up_on(server: KubeServer, provider: KubernetesProvider) -> None:
    server.before("PATCH", r".*/deployments/iris", lambda: server.scale("staging", "deployment", "iris", 4), times=None)
    with pytest.raises(ProviderError, match="409"):
        provider.terminate("staging/deployment/iris")
    assert len([r for r in server.requests if r.method == "PATCH"]) == CONFLICT_ATTEMPTS
    assert server.replicas()["staging/deployment/iris"] == 4


def test_server_errors_are_retried_with_backoff_then_succeed(server: KubeServer, provider: KubernetesProvider, sleeps: list[float]) -> None:
    server.fail("PATCH", r".*/deployments/iris", 500, times=2)
    provider.terminate("staging/deployment/iris")
    assert len(sleeps) == 2 and server.replicas()["staging/deployment/iris"] == 0


def test_server_errors_every_time_fail_after_bounded_attempts(
    server: KubeServer, provider: KubernetesProvider, sleeps: list[float]
) -> None:
    server.fail("*", r".*", 503, times=None)
    with pytest.raises(TransientProviderError, match="503"):
        provider.list()
    assert len(sleeps) == 3 and len(server.requests) == 4


def test_a_slow_api_server_is_a_timeout_not_a_hang(server: KubeServer, make_provider: Factory, sleeps: list[float]) -> None:
    provider = make_provider(timeout_seconds=0.3)
    server.delay("*", r".*", 3.0, times=None)
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match=r"no answer from http://127\.0\.0\.1:\d+ within 0\.3s"):
        provider.terminate("staging/deployment/iris")
    assert time.monotonic() - started < 2.9 and len(sleeps) == 3


def test_a_failed_event_never_fails_the_action(server: KubeServer, provider: KubernetesProvider) -> None:
    server.fail("POST", r"/api/v1/namespaces/staging/events", 403, times=None)
    provider.terminate("staging/deployment/iris")
    assert server.replicas()["staging/deployment/iris"] == 0 and server.events == []


def test_a_missing_object_is_not_found(server: KubeServer, provider: KubernetesProvider) -> None:
    with pytest.raises(DeploymentNotFound):
        provider.terminate("staging/deployment/gone")
    with pytest.raises(DeploymentNotFound):
        provider.restart("staging/deployment/gone")


@pytest.mark.parametrize("name", ["iris", "staging/iris", "staging/pod/iris", "staging//iris", "a/deployment/b/c"])
def test_a_name_that_is_not_namespace_kind_name_is_refused(provider: KubernetesProvider, name: str) -> None:
    with pytest.raises(ProviderError, match="NAMESPACE/KIND/NAME"):
        provider.terminate(name)


def test_objects_outside_the_configured_namespaces_and_kinds_are_refused(server: KubeServer, make_provider: Factory) -> None:
    provider = make_provider(namespaces=("staging",), kinds=("deployment",))
    for name in ("prod/deployment/api", "staging/statefulset/db"):
        with pytest.raises(ProviderError, match="outside what providers.k8s manages"):
            provider.terminate(name)
    assert writes(server) == []
    assert parse_name("staging/statefulset/db").api_kind == "StatefulSet"


# --- delete -------------------------------------------------------------------------------


def test_delete_removes_the_listed_object_and_gone_is_fine(server: KubeServer, provider: KubernetesProvider) -> None:
    server.scale("staging", "deployment", "iris", 0)
    provider.list()
    provider.delete("staging/deployment/iris")
    assert "staging/deployment/iris" not in server.replicas()
    provider.delete("staging/deployment/iris")
    assert [e["reason"] for e in server.events] == ["RetentiondDeleted"]


def test_delete_refuses_a_namesake_or_an_object_running_again(server: KubeServer, provider: KubernetesProvider) -> None:
    server.scale("staging", "deployment", "iris", 0)
    server.scale("staging", "statefulset", "db", 0)
    provider.list()
    server.objects.pop(("staging", "deployment", "iris"))
    server.add("staging", "deployment", "iris", replicas=0)  # recreated: a new uid
    with pytest.raises(ProviderError, match="replaced by a new object"):
        provider.delete("staging/deployment/iris")
    server.scale("staging", "statefulset", "db", 1)
    with pytest.raises(ProviderError, match="runs again"):
        provider.delete("staging/statefulset/db")
    assert writes(server) == []


def test_credentials_that_may_not_list_namespaces_are_told_to_name_them(server: KubeServer, provider: KubernetesProvider) -> None:
    server.fail("GET", r"/api/v1/namespaces", 403, times=None)
    with pytest.raises(ProviderError, match=r"list namespaces: forbidden \(403\).*providers\.k8s\.namespaces") as failure:
        provider.list()
    assert not isinstance(failure.value, PartialListing)
