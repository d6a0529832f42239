"""A local stand-in for BentoCloud's deployment API, for contract tests.

It answers what BentoML 1.4.39's own client asks for (REFERENCE.md §2) in the shapes its
schemas parse (``bentoml/_internal/cloud/schemas``), so the same server can be judged by
``bentoml deployment ...`` and then used to test retentiond's provider.

    with CloudServer(token="t") as server:
        server.add_deployment("iris")
        server.fail_next(500, times=2)        # fault injection, first come first served
        server.delay_next(0.5)                # a slow answer, for client timeouts
        ... server.url, server.requests, server.put_bodies ...

A server always stops: on leaving the ``with``, after ``max_requests`` requests, or when its
watchdog fires, whichever comes first.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

JsonObject = dict[str, Any]
# (status, JSON or text body, seconds to wait before answering, extra headers)
Answer = tuple[int, JsonObject | str, float, dict[str, str]]
DEFAULT_CLUSTER = "default"
EPOCH = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
USER = {"name": "alice", "email": "alice@example.com", "first_name": "Alice", "last_name": "Liddell"}


@dataclass
class Fault:
    """One answer to give instead of the real one: a status, after an optional delay."""

    status: int | None = 500
    delay_seconds: float = 0.0
    body: str = '{"error": "injected failure"}'
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """What the server received: method, path, query (first value of each key) and whether the token matched."""

    method: str
    path: str
    query: dict[str, str]
    authorized: bool


def timestamp(at: datetime) -> str:
    """Return ``at`` the way BentoCloud (Go, RFC 3339 with nanoseconds) writes it."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def resource(uid: str, name: str, resource_type: str, at: datetime, labels: list[JsonObject] | None = None) -> JsonObject:
    """Return the fields every BentoCloud resource carries (``ResourceSchema``)."""
    return {
        "uid": uid, "name": name, "resource_type": resource_type, "labels": labels or [],
        "created_at": timestamp(at), "updated_at": timestamp(at), "deleted_at": None,
    }


class CloudServer:
    """In-memory BentoCloud deployments behind a ThreadingHTTPServer on 127.0.0.1, port chosen by the OS."""

    def __init__(self, token: str = "test-token", *, max_requests: int = 10_000, watchdog_seconds: float = 60.0,
                 not_found_status: int = 404, default_page_size: int = 20) -> None:
        self.token = token
        self.max_requests = max_requests
        self.watchdog_seconds = watchdog_seconds
        # 400 + "record not found" is what older BentoCloud answered for a missing record.
        self.not_found_status = not_found_status
        self.default_page_size = default_page_size
        self.deployments: dict[tuple[str, str], JsonObject] = {}
        self.bentos: dict[str, JsonObject] = {}
        self.clusters: dict[str, JsonObject] = {}
        self.requests: list[Request] = []
        self.put_bodies: list[tuple[str, JsonObject]] = []
        self.faults: deque[Fault] = deque()
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._uids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._watchdog = threading.Timer(watchdog_seconds, self.stop)
        self._watchdog.daemon = True
        self.add_cluster(DEFAULT_CLUSTER)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> CloudServer:
        self._thread.start()
        self._watchdog.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and wake any delayed answer; safe to call from any thread, more than once."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
        self._watchdog.cancel()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._httpd.shutdown()
        self._httpd.server_close()

    def wait_stopped(self, seconds: float) -> bool:
        """Wait up to ``seconds``; return True at once if the server stops meanwhile."""
        return self._stopped.wait(seconds)

    # --- test set-up -------------------------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, body: str = '{"error": "injected failure"}',
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` instead of the real answer."""
        with self._lock:
            self.faults.extend(Fault(status=status, body=body, headers=headers or {}) for _ in range(times))

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` requests for ``seconds`` before answering them for real."""
        with self._lock:
            self.faults.extend(Fault(status=None, delay_seconds=seconds) for _ in range(times))

    def add_cluster(self, name: str) -> JsonObject:
        cluster = resource(f"cluster-{name}", name, "cluster", EPOCH) | {
            "description": "", "organization_name": "acme", "creator": USER, "is_first": not self.clusters,
        }
        self.clusters[name] = cluster
        return cluster

    def add_bento(self, tag: str, *, entry_service: str = "Iris") -> JsonObject:
        """Register bento ``repository:version`` with a manifest naming ``entry_service``."""
        repository_name, version = tag.split(":")
        repository = resource(f"repo-{repository_name}", repository_name, "bento_repository", EPOCH) | {
            "description": "", "latest_bento": None,
        }
        manifest = {"service": f"service:{entry_service}", "bentoml_version": "1.4.39", "size_bytes": 2048,
                    "entry_service": entry_service, "name": repository_name, "version": version, "apis": {},
                    "models": [], "services": [], "envs": [], "schema": {}, "spec": 2}
        # On BentoCloud a bento's name is its version.
        bento = resource(f"bento-{repository_name}-{version}", version, "bento", EPOCH) | {
            "description": "", "version": version, "image_build_status": "success", "upload_status": "success",
            "upload_finished_reason": "", "presigned_upload_url": "", "presigned_download_url": "",
            "manifest": manifest, "repository": repository, "build_at": timestamp(EPOCH),
        }
        self.bentos[tag] = bento
        return bento

    def add_deployment(self, name: str, *, status: str = "running", cluster: str = DEFAULT_CLUSTER,
                       labels: dict[str, str] | None = None, bento: str = "iris:v1",
                       config: JsonObject | None = None, created_at: datetime | None = None) -> JsonObject:
        """Add a deployment shaped like GET /api/v2/deployments/{name}; return it (live, not a copy)."""
        if cluster not in self.clusters:
            self.add_cluster(cluster)
        bento_json = self.bentos.get(bento) or self.add_bento(bento)
        entry_service = bento_json["manifest"]["entry_service"]
        at = created_at or EPOCH + timedelta(minutes=len(self.deployments))
        deployment = resource(f"uid-{next(self._uids)}", name, "deployment", at,
                              [{"key": key, "value": value} for key, value in (labels or {}).items()]) | {
            "status": status, "kube_namespace": "yatai", "creator": USER, "cluster": self.clusters[cluster],
            "manifest": {"dev": False, "routing": None}, "urls": [f"https://{name}.example.bentoml.ai"],
        }
        deployment["latest_revision"] = self._revision(at, config or default_config(entry_service), bento_json)
        self.deployments[(cluster, name)] = deployment
        return deployment

    def add_canary(self, name: str, version_name: str, *, bento: str, weights: dict[str, int],
                   route_by: str = "x-canary", cluster: str = DEFAULT_CLUSTER) -> JsonObject:
        """Give deployment ``name`` a second target ``version_name`` and header routing with ``weights``."""
        deployment = self.deployments[(cluster, name)]
        bento_json = self.bentos.get(bento) or self.add_bento(bento)
        at = EPOCH + timedelta(hours=1)
        canary = resource(f"target-{next(self._uids)}", version_name, "deployment_target", at) | {
            "creator": USER, "config": default_config(bento_json["manifest"]["entry_service"]), "bento": bento_json,
        }
        deployment["latest_revision"]["targets"].append(canary)
        deployment["manifest"]["routing"] = {"route_type": "header", "route_by": route_by, "weights": weights}
        return deployment

    def deployment(self, name: str, cluster: str = DEFAULT_CLUSTER) -> JsonObject:
        return self.deployments[(cluster, name)]

    def _revision(self, at: datetime, config: JsonObject, bento: JsonObject) -> JsonObject:
        number = next(self._uids)
        target = resource(f"target-{number}", "main", "deployment_target", at) | {
            "creator": USER, "config": copy.deepcopy(config), "bento": bento,
            "kube_resource_uid": "", "kube_resource_version": "",
        }
        return resource(f"revision-{number}", f"revision-{number}", "deployment_revision", at) | {
            "creator": USER, "status": "active", "targets": [target],
        }

    # --- answering ---------------------------------------------------------------------

    def answer(self, method: str, raw_path: str, token: str | None, body: bytes) -> Answer | None:
        """Given one request, return (status, JSON or text body, seconds to wait first, extra headers).

        Return None, meaning "drop the connection", once the server has stopped or served ``max_requests``.
        """
        split = urlsplit(raw_path)
        query = {key: values[0] for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        with self._lock:
            # Keep-alive connections outlive shutdown(), so the cap is enforced here, per request.
            if self._stopped.is_set() or len(self.requests) >= self.max_requests:
                threading.Thread(target=self.stop, daemon=True).start()
                return None
            self.requests.append(Request(method, split.path, query, token == self.token))
            fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.status is not None:
            return fault.status, fault.body, fault.delay_seconds, fault.headers
        delay = fault.delay_seconds if fault is not None else 0.0
        if token != self.token:
            return 401, {"error": "invalid api token"}, delay, {}
        status, answer = self._route(method, split.path, query, body)
        return status, answer, delay, {}

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, JsonObject | str]:
        for pattern, route_method, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if match and method == route_method:
                with self._lock:
                    status, answer = handler(*[unquote(group) for group in match.groups()], query=query, body=body)
                    # Serialised later, outside the lock, while other requests may change the live dicts.
                    return status, copy.deepcopy(answer)
        return 404, {"error": f"no route for {method} {path}"}

    def _routes(self) -> list[tuple[str, str, Callable[..., tuple[int, JsonObject | str]]]]:
        return [
            (r"/api/v2/deployments", "GET", self._list),
            (r"/api/v2/deployments/([^/]+)", "GET", self._get),
            (r"/api/v2/deployments/([^/]+)", "PUT", self._update),
            (r"/api/v2/deployments/([^/]+)", "DELETE", self._delete),
            (r"/api/v2/deployments/([^/]+)/terminate", "POST", self._terminate),
            (r"/api/v1/bento_repositories/([^/]+)/bentos/([^/]+)", "GET", self._get_bento),
            (r"/api/v1/auth/current", "GET", lambda **_: (200, USER)),
            (r"/api/v1/current_org", "GET", lambda **_: (200, resource("org-1", "acme", "organization", EPOCH) | {"description": ""})),
        ]

    def _not_found(self, what: str) -> tuple[int, str]:
        if self.not_found_status == 400:
            return 400, json.dumps({"error": f"{what}: record not found"})
        return 404, json.dumps({"error": f"{what} not found"})

    def _list(self, *, query: dict[str, str], body: bytes) -> tuple[int, JsonObject | str]:
        cluster = query.get("cluster", "")
        if cluster:
            items = [item for (where, _), item in self.deployments.items() if where == cluster]
        elif query.get("all") == "true":
            items = list(self.deployments.values())
        else:
            items = [item for (where, _), item in self.deployments.items() if where == DEFAULT_CLUSTER]
        items = [item for item in items if query.get("search", "") in item["name"]]
        start = int(query.get("start") or 0)
        count = int(query.get("count") or self.default_page_size)
        page = [{key: value for key, value in item.items() if key != "urls"} for item in items[start:start + count]]
        return 200, {"start": start, "count": count, "total": len(items), "items": page}

    def _find(self, name: str, query: dict[str, str]) -> JsonObject | None:
        # Without a cluster BentoCloud works in the organisation's default cluster.
        return self.deployments.get((query.get("cluster") or DEFAULT_CLUSTER, name))

    def _get(self, name: str, *, query: dict[str, str], body: bytes) -> tuple[int, JsonObject | str]:
        deployment = self._find(name, query)
        return (200, deployment) if deployment is not None else self._not_found(f"deployment {name}")

    def _terminate(self, name: str, *, query: dict[str, str], body: bytes) -> tuple[int, JsonObject | str]:
        deployment = self._find(name, query)
        if deployment is None:
            return self._not_found(f"deployment {name}")
        deployment["status"] = "terminated"
        deployment["updated_at"] = timestamp(datetime.now(timezone.utc))
        return 200, deployment

    def _update(self, name: str, *, query: dict[str, str], body: bytes) -> tuple[int, JsonObject | str]:
        deployment = self._find(name, query)
        if deployment is None:
            return self._not_found(f"deployment {name}")
        update = json.loads(body)
        self.put_bodies.append((name, copy.deepcopy(update)))
        bento = self.bentos.get(str(update.get("bento")))
        if bento is None:
            return 400, {"error": f"bento {update.get('bento')!r} does not exist"}
        config = {key: value for key, value in update.items() if key not in ("bento", "name", "cluster") and value is not None}
        now = datetime.now(timezone.utc)
        deployment["latest_revision"] = self._revision(now, config, bento)
        deployment["status"] = "running"
        deployment["updated_at"] = timestamp(now)
        return 200, deployment

    def _delete(self, name: str, *, query: dict[str, str], body: bytes) -> tuple[int, JsonObject | str]:
        deployment = self._find(name, query)
        if deployment is None:
            return self._not_found(f"deployment {name}")
        del self.deployments[(deployment["cluster"]["name"], name)]
        return 200, deployment

    def _get_bento(self, repository: str, version: str, *, query: dict[str, str], body: bytes) -> tuple[int, JsonObject | str]:
        bento = self.bentos.get(f"{repository}:{version}")
        return (200, bento) if bento is not None else self._not_found(f"bento {repository}:{version}")


def default_config(entry_service: str = "Iris") -> JsonObject:
    """Return a deployment config as BentoCloud stores it: one service, scaling set, an env, a secret."""
    return {
        "access_authorization": True,
        "envs": [{"name": "LOG_LEVEL", "value": "info"}],
        "secrets": ["hf-token"],
        "services": {
            entry_service: {
                "instance_type": "cpu.2",
                "scaling": {"min_replicas": 1, "max_replicas": 3},
                "envs": [{"name": "WORKERS", "value": "2"}],
                "deployment_strategy": "RollingUpdate",
            },
        },
    }


def _handler_for(server: CloudServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # An idle keep-alive connection must not hold a handler thread for ever.
        timeout = 5

        def _serve(self) -> None:
            body = self._read_body()
            answered: Answer | None
            try:
                answered = server.answer(self.command, self.path, self.headers.get("X-YATAI-API-TOKEN"), body)
            except Exception as error:  # a bug in the fake must show up as an answer, not a hang
                answered = 500, f"contract server error: {error!r}", 0.0, {}
            if answered is None:
                self.close_connection = True
                return
            status, answer, delay, headers = answered
            if delay and server.wait_stopped(delay):
                return
            payload = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up waiting (a timeout test); nothing left to do.
                self.close_connection = True

        def _read_body(self) -> bytes:
            # BentoML streams an upload (a file object) with chunked transfer encoding.
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
