"""BentoCloud provider against a local contract server that BentoML's own CLI accepts as BentoCloud."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.providers import DeploymentNotFound, ProviderError, TransientProviderError
from daemon.providers.bentocloud import BentoCloudProvider, build_update_body, resolve_cloud_credentials
from tests.cloud_server import EPOCH, CloudServer, default_config

TOKEN = "s3cr3t-token-0123456789"
BENTOML = Path(sys.executable).parent / "bentoml"


@pytest.fixture
def server() -> Iterator[CloudServer]:
    with CloudServer(token=TOKEN, watchdog_seconds=60) as cloud:
        yield cloud


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def provider(server: CloudServer, sleeps: list[float]) -> Iterator[BentoCloudProvider]:
    with BentoCloudProvider(name="cloud", endpoint=server.url, api_token=TOKEN, timeout_seconds=2, sleep=sleeps.append) as cloud:
        yield cloud


def _bentoml(server: CloudServer, home: Path, *arguments: str) -> subprocess.Popen[str]:
    environment = dict(os.environ, BENTO_CLOUD_API_KEY=TOKEN, BENTO_CLOUD_API_ENDPOINT=server.url,
                       BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="True")
    return subprocess.Popen([str(BENTOML), *arguments], env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen[str]) -> str:
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, f"{process.args!r}: {stderr[-2000:]}"
    return stdout


def _without_nulls(value: Any) -> Any:
    """BentoML's client spells out null fields and empty dicts that the stored config leaves out."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None and item != {}}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


@pytest.mark.bentoml
def test_bentoml_cli_lists_terminates_and_updates_on_the_contract_server(server: CloudServer, tmp_path: Path) -> None:
    server.add_deployment("iris", labels={"team": "ml"})
    server.add_deployment("summarizer", status="terminated", bento="summarizer:v3")
    server.add_deployment("canary", status="terminated")
    server.add_canary("canary", "candidate", bento="iris:v2", weights={"main": 90, "candidate": 10})
    expected_bodies = {name: build_update_body(copy.deepcopy(server.deployment(name))) for name in ("summarizer", "canary")}

    listed = json.loads(_finish(_bentoml(server, tmp_path, "deployment", "list", "-o", "json")))
    assert [(item["name"], item["status"]["status"], item["bento"], item["cluster"]) for item in listed] == [
        ("iris", "running", "iris:v1", "default"), ("summarizer", "terminated", "summarizer:v3", "default"),
        ("canary", "terminated", "iris:v1", "default"),
    ]
    assert listed[0]["config"]["services"] == default_config()["services"]

    running = [
        _bentoml(server, tmp_path, "deployment", "terminate", "iris"),
        _bentoml(server, tmp_path, "deployment", "update", "summarizer"),
        _bentoml(server, tmp_path, "deployment", "update", "canary"),
    ]
    for process in running:
        _finish(process)

    assert server.deployment("iris")["status"] == "terminated"
    assert server.deployment("summarizer")["status"] == "running"
    assert all(request.authorized for request in server.requests)
    # Restart builds the body `bentoml deployment update NAME` sends, field for field.
    assert {name: _without_nulls(body) for name, body in server.put_bodies} == expected_bodies


def test_list_pages_through_every_deployment(server: CloudServer, sleeps: list[float]) -> None:
    for number in range(250):
        server.add_deployment(f"svc-{number:03}", labels={"team": "ml", "index": str(number)})
    with BentoCloudProvider(name="cloud", endpoint=server.url, api_token=TOKEN, page_size=100, sleep=sleeps.append) as cloud:
        deployments = cloud.list()

    assert [deployment.name for deployment in deployments] == [f"svc-{number:03}" for number in range(250)]
    assert [request.query["start"] for request in server.requests] == ["0", "100", "200"]
    assert {request.query["count"] for request in server.requests} == {"100"}
    assert {(request.query["all"], request.query["cluster"]) for request in server.requests} == {("true", "")}
    last = deployments[-1]
    assert (last.provider, last.status, dict(last.labels)) == ("cloud", "running", {"team": "ml", "index": "249"})
    assert last.identity == server.deployment("svc-249")["uid"]
    assert last.created_at == EPOCH + timedelta(minutes=249)
    assert last.created_at is not None and last.created_at.tzinfo == timezone.utc


def test_configured_cluster_is_sent_and_only_its_deployments_listed(server: CloudServer, sleeps: list[float]) -> None:
    server.add_deployment("iris")
    server.add_deployment("llm", cluster="gpu-eu")
    with BentoCloudProvider(name="cloud", endpoint=server.url, api_token=TOKEN, cluster="gpu-eu", sleep=sleeps.append) as cloud:
        assert [deployment.name for deployment in cloud.list()] == ["llm"]
        cloud.terminate("llm")

    assert {request.query["cluster"] for request in server.requests} == {"gpu-eu"}
    assert server.requests[0].query["all"] == ""
    assert server.deployment("llm", "gpu-eu")["status"] == "terminated"


def test_actions_go_to_the_cluster_the_listing_saw(server: CloudServer, provider: BentoCloudProvider) -> None:
    server.add_deployment("llm", cluster="gpu-eu")
    provider.list()
    provider.terminate("llm")
    provider.restart("llm")
    provider.delete("llm")

    assert [request.query["cluster"] for request in server.requests[1:]] == ["gpu-eu"] * 5
    assert server.deployments == {}


def test_a_name_in_two_clusters_is_refused_without_a_configured_cluster(server: CloudServer, provider: BentoCloudProvider) -> None:
    server.add_deployment("llm")
    server.add_deployment("llm", cluster="gpu-eu")
    assert len(provider.list()) == 2
    with pytest.raises(ProviderError, match="gpu-eu") as raised:
        provider.terminate("llm")
    assert not isinstance(raised.value, DeploymentNotFound)
    assert {item["status"] for item in server.deployments.values()} == {"running"}


def test_terminate_is_idempotent(server: CloudServer, provider: BentoCloudProvider) -> None:
    server.add_deployment("iris")
    provider.terminate("iris")
    provider.terminate("iris")

    assert server.deployment("iris")["status"] == "terminated"
    assert [(request.method, request.path) for request in server.requests] == [
        ("GET", "/api/v2/deployments/iris"), ("POST", "/api/v2/deployments/iris/terminate"), ("GET", "/api/v2/deployments/iris"),
    ]


def test_restart_puts_the_unchanged_config_once(server: CloudServer, provider: BentoCloudProvider) -> None:
    original = server.add_deployment("iris", status="terminated", bento="iris:v7")
    original_config = copy.deepcopy(original["latest_revision"]["targets"][0]["config"])
    provider.restart("iris")
    provider.restart("iris")

    assert server.deployment("iris")["status"] == "running"
    [(name, body)] = server.put_bodies
    assert name == "iris"
    assert body.pop("bento") == "iris:v7"
    assert body == original_config
    assert server.deployment("iris")["latest_revision"]["targets"][0]["config"] == original_config


@pytest.mark.parametrize("status", ["running", "deploying", "scaled-to-zero", "image-building"])
def test_restart_of_a_deployment_that_is_up_does_nothing(server: CloudServer, provider: BentoCloudProvider, status: str) -> None:
    server.add_deployment("iris", status=status)
    provider.restart("iris")
    assert server.put_bodies == []
    assert server.deployment("iris")["status"] == status


def test_restart_without_a_revision_to_reuse_is_refused(server: CloudServer, provider: BentoCloudProvider) -> None:
    server.add_deployment("iris", status="terminated")["latest_revision"] = None
    with pytest.raises(ProviderError, match="no target with a config and a bento"):
        provider.restart("iris")
    assert server.put_bodies == []


def test_delete_is_idempotent(server: CloudServer, provider: BentoCloudProvider) -> None:
    server.add_deployment("iris")
    provider.delete("iris")
    provider.delete("iris")
    assert server.deployments == {}
    assert [request.method for request in server.requests] == ["DELETE", "DELETE"]


@pytest.mark.parametrize("not_found_status", [404, 400])
def test_a_missing_deployment_is_not_found_but_deleting_it_succeeds(sleeps: list[float], not_found_status: int) -> None:
    with CloudServer(token=TOKEN, not_found_status=not_found_status) as server, \
            BentoCloudProvider(name="cloud", endpoint=server.url, api_token=TOKEN, sleep=sleeps.append) as cloud:
        for action in (cloud.terminate, cloud.restart):
            with pytest.raises(DeploymentNotFound):
                action("ghost")
        cloud.delete("ghost")
    assert sleeps == []


def test_server_errors_are_retried_then_succeed(server: CloudServer, provider: BentoCloudProvider, sleeps: list[float]) -> None:
    server.add_deployment("iris")
    server.fail_next(500, times=2)
    provider.terminate("iris")

    assert len(sleeps) == 2
    assert server.deployment("iris")["status"] == "terminated"


def test_a_persistent_server_error_gives_up_after_bounded_attempts(
    server: CloudServer, provider: BentoCloudProvider, sleeps: list[float]
) -> None:
    server.fail_next(503, times=10, body=f"upstream said {TOKEN}", headers={"x-trace-id": "trace-42"})
    with pytest.raises(TransientProviderError, match="HTTP 503, trace id trace-42") as raised:
        provider.list()

    assert len(server.requests) == 4
    assert len(sleeps) == 3
    assert TOKEN not in str(raised.value)


def test_a_timeout_is_retried(server: CloudServer, sleeps: list[float]) -> None:
    server.add_deployment("iris")
    server.delay_next(1.0)
    with BentoCloudProvider(name="cloud", endpoint=server.url, api_token=TOKEN, timeout_seconds=0.2, sleep=sleeps.append) as cloud:
        assert [deployment.name for deployment in cloud.list()] == ["iris"]
    assert len(server.requests) == 2
    assert len(sleeps) == 1


def test_a_refused_connection_is_transient(sleeps: list[float]) -> None:
    with CloudServer(token=TOKEN) as closed:
        endpoint = closed.url
    with BentoCloudProvider(name="cloud", endpoint=endpoint, api_token=TOKEN, attempts=2, sleep=sleeps.append) as cloud, \
            pytest.raises(TransientProviderError, match="ConnectError"):
        cloud.list()
    assert len(sleeps) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_token_is_reported_once_without_the_token(server: CloudServer, provider: BentoCloudProvider, status: int) -> None:
    server.fail_next(status, body=f'{{"error": "bad token {TOKEN}"}}')
    with pytest.raises(ProviderError, match=rf"BentoCloud rejected the API token \({status}\)") as raised:
        provider.list()
    assert not isinstance(raised.value, TransientProviderError)
    assert TOKEN not in str(raised.value)
    assert len(server.requests) == 1


def test_a_wrong_token_is_rejected_by_the_server(server: CloudServer, sleeps: list[float]) -> None:
    with BentoCloudProvider(name="cloud", endpoint=server.url, api_token="wrong-token", sleep=sleeps.append) as cloud, \
            pytest.raises(ProviderError, match=r"\(401\)") as raised:
        cloud.list()
    assert "wrong-token" not in str(raised.value)


def test_other_client_errors_are_not_retried(server: CloudServer, provider: BentoCloudProvider, sleeps: list[float]) -> None:
    server.add_deployment("iris", status="terminated")
    server.fail_next(422, body='{"error": "invalid config"}', times=5)
    with pytest.raises(ProviderError, match="HTTP 422") as raised:
        provider.list()
    assert not isinstance(raised.value, TransientProviderError)
    assert sleeps == []


def test_the_contract_server_stops_by_itself(sleeps: list[float]) -> None:
    with CloudServer(token=TOKEN, max_requests=2) as capped, \
            BentoCloudProvider(name="cloud", endpoint=capped.url, api_token=TOKEN, attempts=1, sleep=sleeps.append) as cloud:
        cloud.list()
        cloud.list()
        with pytest.raises(TransientProviderError):
            cloud.list()
    watched = CloudServer(token=TOKEN, watchdog_seconds=0.1)
    with watched, BentoCloudProvider(name="cloud", endpoint=watched.url, api_token=TOKEN, attempts=1, sleep=sleeps.append) as cloud:
        watched.wait_stopped(5)
        with pytest.raises(TransientProviderError):
            cloud.list()


# --- credentials -------------------------------------------------------------------------


def test_configured_credentials_win_over_environment_and_context(tmp_path: Path) -> None:
    environ = {"BENTO_CLOUD_API_KEY": "from-env", "BENTO_CLOUD_API_ENDPOINT": "https://env.example"}
    configured = resolve_cloud_credentials("https://config.example", "from-config", environ, tmp_path)
    assert configured == ("https://config.example", "from-config")
    # A configured token is never sent to the environment's endpoint.
    assert resolve_cloud_credentials(None, "from-config", environ, tmp_path) == ("https://cloud.bentoml.com", "from-config")


def test_environment_credentials_come_next(tmp_path: Path) -> None:
    environ = {"BENTO_CLOUD_API_KEY": "from-env", "BENTO_CLOUD_API_ENDPOINT": "https://env.example"}
    assert resolve_cloud_credentials(None, None, environ, tmp_path) == ("https://env.example", "from-env")
    assert resolve_cloud_credentials("", "", {"BENTO_CLOUD_API_KEY": "from-env"}, tmp_path) == ("https://cloud.bentoml.com", "from-env")


@pytest.mark.bentoml
def test_the_context_bentoml_cloud_login_wrote_is_used_last(server: CloudServer, tmp_path: Path) -> None:
    environment = dict(os.environ, BENTOML_HOME=str(tmp_path), BENTOML_DO_NOT_TRACK="True")
    login = subprocess.run([str(BENTOML), "cloud", "login", "--endpoint", server.url, "--api-token", TOKEN],
                           env=environment, capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    assert resolve_cloud_credentials(None, None, {}, tmp_path) == (server.url, TOKEN)
    assert resolve_cloud_credentials("https://config.example", None, {}, tmp_path) == ("https://config.example", TOKEN)

    # A second context in the very format BentoML just wrote, chosen the way BentoML chooses it.
    path = tmp_path / ".yatai.yaml"
    written = yaml.safe_load(path.read_text())
    written["contexts"].append({"name": "staging", "endpoint": "https://staging.example", "api_token": "staging-token", "email": ""})
    path.write_text(yaml.safe_dump(written))
    chosen = resolve_cloud_credentials(None, None, {"BENTOML_CLOUD_CONTEXT": "staging"}, tmp_path)
    assert chosen == ("https://staging.example", "staging-token")
    written["current_context_name"] = "staging"
    path.write_text(yaml.safe_dump(written))
    assert resolve_cloud_credentials(None, None, {}, tmp_path) == ("https://staging.example", "staging-token")


def test_no_token_anywhere_names_every_place_looked(tmp_path: Path) -> None:
    (tmp_path / ".yatai.yaml").write_text(
        f"contexts:\n- name: default\n  endpoint: https://cloud.bentoml.com\n  api_token: {TOKEN}\ncurrent_context_name: default\n"
    )
    with pytest.raises(ProviderError) as raised:
        resolve_cloud_credentials(None, None, {"BENTOML_CLOUD_CONTEXT": "prod"}, tmp_path)
    message = str(raised.value)
    for place in ("api_token", "$BENTO_CLOUD_API_KEY", "'prod'", str(tmp_path / ".yatai.yaml")):
        assert place in message
    assert TOKEN not in message


def test_a_broken_yatai_yaml_is_reported_without_its_content(tmp_path: Path) -> None:
    (tmp_path / ".yatai.yaml").write_text(f"contexts:\n- name: default\n  api_token: {TOKEN}\n  endpoint: [unclosed\n")
    with pytest.raises(ProviderError, match="not valid YAML") as raised:
        resolve_cloud_credentials(None, None, {}, tmp_path)
    assert TOKEN not in str(raised.value)
