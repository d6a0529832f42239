"""BentoCloud's registry: the stand-in judged by BentoML's own client, then retentiond's client against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.cloud_registry import CACHE_FILE, CloudRegistry, HeldCache, ask_registry
from daemon.providers import ProviderError, TransientProviderError
from tests.registry_server import RegistryServer

TOKEN = "registry-token-0123456789"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def server() -> Iterator[RegistryServer]:
    with RegistryServer(token=TOKEN, watchdog_seconds=60) as registry:
        yield registry


@pytest.fixture
def registry(server: RegistryServer) -> Iterator[CloudRegistry]:
    client = CloudRegistry(provider="cloud", endpoint=server.url, api_token=TOKEN, timeout_seconds=1, sleep=lambda _: None)
    yield client
    client.close()


# BentoML's own client in a process of its own (it reads its home and config at import), printing what it parsed.
BENTOML_CLIENT = r"""
import json, sys
from bentoml._internal.cloud.client import RestApiClient
client = RestApiClient(sys.argv[1], sys.argv[2])
model, uploading, bento = client.v1.get_model("iris", "v1"), client.v1.get_model("iris", "v2"), client.v1.get_bento("svc", "b1")
print(json.dumps({
    "model": [model.version, model.upload_status, model.manifest.bentoml_version, model.build_at.year],
    "uploading": uploading.upload_status,
    "bento": [bento.version, bento.upload_status, bento.manifest.entry_service],
    "absent": [client.v1.get_model("iris", "absent"), client.v1.get_bento("svc", "absent")],
    "repositories": [client.v1.get_model_repository("iris").name, client.v1.get_bento_repository("svc").name],
}))
"""


@pytest.mark.bentoml
def test_bentomls_own_client_reads_models_and_bentos_from_the_stand_in(server: RegistryServer, tmp_path: Path) -> None:
    server.hold("model", "iris:v1")
    server.hold("model", "iris:v2", status="uploading")
    server.hold("bento", "svc:b1", status="failed")
    environment = dict(os.environ, BENTOML_HOME=str(tmp_path), BENTOML_DO_NOT_TRACK="True")
    result = subprocess.run([sys.executable, "-c", BENTOML_CLIENT, server.url, TOKEN], capture_output=True, text=True,
                            env=environment, timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {
        "model": ["v1", "success", "1.4.39", 2025], "uploading": "uploading", "bento": ["b1", "failed", "Iris"],
        "absent": [None, None], "repositories": ["iris", "svc"],
    }
    assert all(request.authorized for request in server.requests)


def test_registry_asks_the_path_bentomls_client_asks_and_reads_upload_status(server: RegistryServer, registry: CloudRegistry) -> None:
    server.hold("model", "iris:v1")
    server.hold("bento", "svc:b1", status="pending")

    assert registry.upload_status("model", "iris", "v1") == "success"
    assert registry.upload_status("bento", "svc", "b1") == "pending"
    assert registry.upload_status("model", "iris", "v9") is None
    assert [(r.method, r.path, r.authorized) for r in server.requests] == [
        ("GET", "/api/v1/model_repositories/iris/models/v1", True),
        ("GET", "/api/v1/bento_repositories/svc/bentos/b1", True),
        ("GET", "/api/v1/model_repositories/iris/models/v9", True),
    ]


def test_400_record_not_found_means_absent_as_bentoml_reads_it(registry: CloudRegistry) -> None:
    with RegistryServer(token=TOKEN, not_found_status=400) as old_cloud:
        client = CloudRegistry(provider="cloud", endpoint=old_cloud.url, api_token=TOKEN, sleep=lambda _: None)
        assert client.upload_status("model", "iris", "v1") is None
        client.close()


def test_5xx_is_retried_and_then_raised(server: RegistryServer, registry: CloudRegistry) -> None:
    server.hold("model", "iris:v1")
    server.fail_next(503, times=2)
    assert registry.upload_status("model", "iris", "v1") == "success"
    server.fail_registry(500)
    with pytest.raises(TransientProviderError, match="HTTP 500"):
        registry.upload_status("model", "iris", "v1")
    assert len(server.registry_requests("model")) == 3 + 4


def test_a_rejected_token_is_not_retried_and_not_printed(server: RegistryServer) -> None:
    client = CloudRegistry(provider="cloud", endpoint=server.url, api_token="wrong-token", sleep=lambda _: None)
    with pytest.raises(ProviderError, match="rejected the API token") as raised:
        client.upload_status("model", "iris", "v1")
    client.close()
    assert not isinstance(raised.value, TransientProviderError)
    assert "wrong-token" not in str(raised.value)
    assert len(server.requests) == 1


def test_an_answer_about_another_version_or_without_upload_status_proves_nothing(server: RegistryServer, registry: CloudRegistry) -> None:
    held = server.hold("model", "iris:v1")
    held["version"] = "v2"
    with pytest.raises(ProviderError, match="about version 'v2'"):
        registry.upload_status("model", "iris", "v1")
    del held["upload_status"]
    held["version"] = "v1"
    with pytest.raises(ProviderError, match="no upload_status"):
        registry.upload_status("model", "iris", "v1")


def test_only_held_answers_are_cached_and_only_until_they_expire(server: RegistryServer, registry: CloudRegistry, tmp_path: Path) -> None:
    server.hold("model", "iris:v1")
    server.hold("model", "iris:v2", status="uploading")
    keys = [("model", "iris", "v1"), ("model", "iris", "v2"), ("model", "iris", "v3")]
    cache = HeldCache.load(tmp_path, registry.endpoint, timedelta(minutes=10), NOW)
    assert ask_registry(registry, cache, keys, NOW) == ({keys[0]: "success", keys[1]: "uploading", keys[2]: None}, None)
    cache.save()

    later = HeldCache.load(tmp_path, registry.endpoint, timedelta(minutes=10), NOW + timedelta(minutes=9))
    before = len(server.requests)
    assert ask_registry(registry, later, keys, NOW + timedelta(minutes=9))[0][keys[0]] == "success"
    assert [r.path.rsplit("/", 1)[1] for r in server.requests[before:]] == ["v2", "v3"]

    expired = HeldCache.load(tmp_path, registry.endpoint, timedelta(minutes=10), NOW + timedelta(minutes=11))
    other_endpoint = HeldCache.load(tmp_path, "http://elsewhere", timedelta(minutes=10), NOW)
    assert not expired.holds(keys[0]) and not other_endpoint.holds(keys[0])
    assert set(json.loads((tmp_path / CACHE_FILE).read_text())) == {registry.endpoint}


def test_asking_stops_at_the_first_failure(server: RegistryServer, registry: CloudRegistry, tmp_path: Path) -> None:
    server.fail_registry(401)
    cache = HeldCache.load(tmp_path, registry.endpoint, timedelta(0), NOW)
    statuses, failure = ask_registry(registry, cache, [("model", "iris", f"v{index}") for index in range(5)], NOW)

    assert statuses == {}
    assert failure is not None and "401" in failure
    assert len(server.requests) == 1
