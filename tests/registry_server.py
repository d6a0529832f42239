"""A local stand-in for BentoCloud's model and bento registry, for contract tests.

It extends the deployment stand-in (``tests.cloud_server``) with the ``/api/v1/model_repositories``
and ``/api/v1/bento_repositories`` endpoints that BentoML 1.4.39's ``RestApiClientV1`` calls, in the
shapes its schemas parse (``ModelSchema``, ``BentoSchema``, ``*RepositorySchema``), including what
``bentoml models push`` / ``bentoml push`` need with the "proxy" transmission strategy: register the
repository and the version, ``start_upload``, then PUT the tar archive to ``.../upload``, after
which the version's ``upload_status`` is "success" (as BentoCloud marks a proxied upload itself).

    with RegistryServer(token="t") as registry:
        registry.hold("model", "iris:v1")                      # upload_status "success"
        registry.hold("model", "iris:v2", status="uploading")  # also "pending", "failed"
        registry.fail_registry(500)                             # registry requests only; deployments still answer
        ... registry.url, registry.uploads[("model", "iris:v3")] (member names of the pushed tar) ...
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

from tests.cloud_server import EPOCH, Answer, CloudServer, Fault, JsonObject, Request, resource, timestamp

RegistryKind = Literal["model", "bento"]
Reply = tuple[int, JsonObject | str]
Handler = Callable[..., Reply]
_PATHS: dict[RegistryKind, tuple[str, str]] = {"model": ("model_repositories", "models"), "bento": ("bento_repositories", "bentos")}


class RegistryServer(CloudServer):
    """BentoCloud deployments plus its model and bento registry, in memory, on 127.0.0.1."""

    def __init__(self, token: str = "test-token", **options: Any) -> None:
        super().__init__(token, **options)
        self.repositories: dict[tuple[RegistryKind, str], JsonObject] = {}
        self.models: dict[str, JsonObject] = {}
        # Tar member names of every archive uploaded, by (kind, tag).
        self.uploads: dict[tuple[RegistryKind, str], list[str]] = {}
        # What a finished proxied upload becomes; "failed" makes every push fail on the server side.
        self.upload_outcome = "success"
        self.registry_fault: Fault | None = None

    def hold(self, kind: RegistryKind, tag: str, *, status: str = "success") -> JsonObject:
        """Register version ``tag`` of ``kind`` with ``upload_status`` ``status``; return it (live)."""
        name, version = tag.split(":")
        with self._lock:
            repository = self._repository(kind, name)
            if kind == "bento":
                entry = self.add_bento(tag)
                entry["repository"] = repository
            else:
                entry = self._new_model(repository, version, _model_manifest())
                self.models[tag] = entry
            entry["upload_status"] = status
            return entry

    def fail_registry(self, status: int | None, *, delay_seconds: float = 0.0) -> None:
        """Answer every registry request with ``status`` (None: the real answer) after ``delay_seconds``, for good."""
        with self._lock:
            self.registry_fault = Fault(status=status, delay_seconds=delay_seconds)

    def registry_requests(self, kind: RegistryKind) -> list[str]:
        """Return the paths of the GET requests made for single versions of ``kind``."""
        repositories, versions = _PATHS[kind]
        prefix = f"/api/v1/{repositories}/"
        return [r.path for r in self.requests if r.method == "GET" and r.path.startswith(prefix) and f"/{versions}/" in r.path]

    # --- answering ---------------------------------------------------------------------

    def answer(self, method: str, raw_path: str, token: str | None, body: bytes) -> Answer | None:
        fault = self.registry_fault
        path = urlsplit(raw_path).path
        if fault is None or not path.startswith(("/api/v1/model_repositories", "/api/v1/bento_repositories")):
            return super().answer(method, raw_path, token, body)
        if fault.status is None:
            answered = super().answer(method, raw_path, token, body)
            return None if answered is None else (answered[0], answered[1], fault.delay_seconds, answered[3])
        with self._lock:
            if self._stopped.is_set() or len(self.requests) >= self.max_requests:
                threading.Thread(target=self.stop, daemon=True).start()
                return None
            self.requests.append(Request(method, path, {}, token == self.token))
        return fault.status, fault.body, fault.delay_seconds, {}

    def _routes(self) -> list[tuple[str, str, Handler]]:
        routes: list[tuple[str, str, Handler]] = []
        for kind, (repositories, versions) in _PATHS.items():
            base = f"/api/v1/{repositories}"
            one = f"{base}/([^/]+)/{versions}/([^/]+)"

            def bind(handler: Handler, kind: RegistryKind = kind) -> Handler:
                return lambda *groups, **options: handler(kind, *groups, **options)

            routes += [
                (f"{base}/([^/]+)", "GET", bind(self._get_repository)),
                (base, "POST", bind(self._create_repository)),
                (one, "GET", bind(self._get_version)),
                (f"{base}/([^/]+)/{versions}", "POST", bind(self._create_version)),
                (one, "PATCH", bind(self._update_version)),
                (f"{one}/start_upload", "PATCH", bind(self._start_upload)),
                (f"{one}/upload", "PUT", bind(self._upload)),
                (f"{one}/finish_upload", "PATCH", bind(self._finish_upload)),
            ]
        return routes + super()._routes()

    def _repository(self, kind: RegistryKind, name: str) -> JsonObject:
        key = (kind, name)
        if key not in self.repositories:
            self.repositories[key] = resource(f"{kind}-repo-{name}", name, f"{kind}_repository", EPOCH) | {
                "description": "", f"latest_{kind}": None,
            }
        return self.repositories[key]

    def _versions(self, kind: RegistryKind) -> dict[str, JsonObject]:
        return self.models if kind == "model" else self.bentos

    def _new_model(self, repository: JsonObject, version: str, manifest: JsonObject) -> JsonObject:
        # On BentoCloud a version's name is its version.
        return resource(f"model-{repository['name']}-{version}", version, "model", EPOCH) | {
            "description": "", "version": version, "image_build_status": "", "upload_status": "pending",
            "upload_finished_reason": "", "presigned_upload_url": "", "presigned_download_url": "",
            "manifest": manifest, "transmission_strategy": "proxy", "build_at": timestamp(EPOCH),
            "repository": repository,
        }

    def _get_repository(self, kind: RegistryKind, name: str, *, body: bytes, **_: object) -> Reply:
        repository = self.repositories.get((kind, name))
        return (200, repository) if repository is not None else self._not_found(f"{kind} repository {name}")

    def _create_repository(self, kind: RegistryKind, *, body: bytes, **_: object) -> Reply:
        return 200, self._repository(kind, json.loads(body)["name"])

    def _get_version(self, kind: RegistryKind, name: str, version: str, *, body: bytes, **_: object) -> Reply:
        entry = self._versions(kind).get(f"{name}:{version}")
        return (200, entry) if entry is not None else self._not_found(f"{kind} {name}:{version}")

    def _create_version(self, kind: RegistryKind, name: str, *, body: bytes, **_: object) -> Reply:
        request = json.loads(body)
        version = request["version"]
        repository = self._repository(kind, name)
        if kind == "model":
            entry = self._new_model(repository, version, request["manifest"])
        else:
            entry = self.add_bento(f"{name}:{version}") | {"manifest": request["manifest"], "repository": repository}
            entry["upload_status"], entry["transmission_strategy"] = "pending", "proxy"
        entry["labels"] = request.get("labels") or []
        self._versions(kind)[f"{name}:{version}"] = entry
        return 200, entry

    def _update_version(self, kind: RegistryKind, name: str, version: str, *, body: bytes, **_: object) -> Reply:
        entry = self._versions(kind).get(f"{name}:{version}")
        if entry is None:
            return self._not_found(f"{kind} {name}:{version}")
        entry.update({key: value for key, value in json.loads(body).items() if value is not None})
        entry["transmission_strategy"] = "proxy"
        return 200, entry

    def _start_upload(self, kind: RegistryKind, name: str, version: str, *, body: bytes, **_: object) -> Reply:
        entry = self._versions(kind).get(f"{name}:{version}")
        if entry is None:
            return self._not_found(f"{kind} {name}:{version}")
        entry["upload_status"] = "uploading"
        entry["upload_started_at"] = timestamp(datetime.now(timezone.utc))
        return 200, entry

    def _upload(self, kind: RegistryKind, name: str, version: str, *, body: bytes, **_: object) -> Reply:
        entry = self._versions(kind).get(f"{name}:{version}")
        if entry is None:
            return self._not_found(f"{kind} {name}:{version}")
        try:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as archive:
                self.uploads[(kind, f"{name}:{version}")] = archive.getnames()
        except tarfile.TarError as error:
            return 400, {"error": f"not a tar archive: {error}"}
        entry["upload_status"] = self.upload_outcome
        entry["upload_finished_at"] = timestamp(datetime.now(timezone.utc))
        return 200, {}

    def _finish_upload(self, kind: RegistryKind, name: str, version: str, *, body: bytes, **_: object) -> Reply:
        entry = self._versions(kind).get(f"{name}:{version}")
        if entry is None:
            return self._not_found(f"{kind} {name}:{version}")
        request = json.loads(body)
        entry["upload_status"], entry["upload_finished_reason"] = request.get("status"), request.get("reason") or ""
        return 200, entry


def _model_manifest() -> JsonObject:
    return {"module": "", "api_version": "v1", "bentoml_version": "1.4.39", "size_bytes": 200,
            "metadata": {}, "context": {}, "options": {}}
