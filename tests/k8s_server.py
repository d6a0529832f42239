"""A local stand-in for the Kubernetes API server, for contract tests of the kubernetes provider.

It speaks the REST paths and shapes that lightkube uses for what the provider needs: apps/v1
Deployments and StatefulSets (list within a namespace or across all, with labelSelector and
limit/continue; get; merge and strategic-merge PATCH; DELETE), core/v1 namespaces (list) and
events (create), and KEDA ScaledObjects (list; 404 while KEDA is "not installed"). Like the
real server it demands the bearer token (401), answers errors as ``Status`` objects, bumps
resourceVersion on every write and refuses a patch that carries a stale one (409), and keeps
managedFields per field manager.

    with KubeServer(token="t") as server:
        server.add("staging", "deployment", "iris", replicas=3)
        server.fail("GET", r"/apis/apps/v1/namespaces/prod/.*", 403, times=None)   # for ever
        server.fail("PATCH", r".*/iris", 500, times=2)
        server.delay("GET", r".*", 2.0)                                           # a slow answer
        server.before("PATCH", r".*/iris", lambda: server.scale("staging", "deployment", "iris", 5))
        ... server.url, server.requests, server.events, server.get(...) ...

A server always stops: on leaving the ``with``, after ``max_requests`` requests, or when its
watchdog fires, whichever comes first.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

JsonObject = dict[str, Any]
EPOCH = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
PLURALS = {"deployment": "deployments", "statefulset": "statefulsets"}
KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet"}
MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


def timestamp(at: datetime) -> str:
    """Return ``at`` as the API server writes times (RFC 3339, seconds, Z)."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str) -> JsonObject:
    """Return the ``Status`` object the API server answers an error with."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


@dataclass
class Rule:
    """Something to do to requests whose method and path match: answer ``status``, wait, or run ``before``."""

    method: str
    path: str
    status: int | None = None
    delay_seconds: float = 0.0
    before: Callable[[], None] | None = None
    times: int | None = 1  # None: for ever

    def matches(self, method: str, path: str) -> bool:
        return self.method in (method, "*") and re.fullmatch(self.path, path) is not None


@dataclass(frozen=True)
class Request:
    """What the server received."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    authorized: bool
    body: JsonObject | None = field(default=None, compare=False)


class KubeServer:
    """In-memory Kubernetes objects behind a ThreadingHTTPServer on 127.0.0.1, port chosen by the OS."""

    def __init__(self, token: str = "test-token", *, max_requests: int = 10_000, watchdog_seconds: float = 60.0) -> None:
        self.token = token
        self.max_requests = max_requests
        self.objects: dict[tuple[str, str, str], JsonObject] = {}  # (namespace, kind, name)
        self.namespaces: list[str] = []
        self.scaled_objects: dict[tuple[str, str], JsonObject] = {}
        self.keda_installed = True
        self.events: list[JsonObject] = []
        self.requests: list[Request] = []
        self.rules: list[Rule] = []
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._versions = itertools.count(1000)
        self._uids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._watchdog = threading.Timer(watchdog_seconds, self.stop)
        self._watchdog.daemon = True

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> KubeServer:
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

    def write_kubeconfig(self, path: Path, *, token: str | None = None, namespace: str = "default") -> Path:
        """Write a kubeconfig whose current context points at this server with a bearer token; return its path."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "retentiond", "user": {"token": token if token is not None else self.token}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "retentiond", "namespace": namespace}}],
        }))
        return path

    # --- test set-up -------------------------------------------------------------------

    def fail(self, method: str, path: str, code: int, *, times: int | None = 1) -> None:
        """Answer matching requests with ``code`` (a Status object), ``times`` times (None: for ever)."""
        with self._lock:
            self.rules.append(Rule(method, path, status=code, times=times))

    def delay(self, method: str, path: str, seconds: float, *, times: int | None = 1) -> None:
        """Hold matching requests for ``seconds`` before answering them for real."""
        with self._lock:
            self.rules.append(Rule(method, path, delay_seconds=seconds, times=times))

    def before(self, method: str, path: str, action: Callable[[], None], *, times: int | None = 1) -> None:
        """Run ``action`` (say, someone else's write) just before a matching request is served."""
        with self._lock:
            self.rules.append(Rule(method, path, before=action, times=times))

    def add(self, namespace: str, kind: str, name: str, *, replicas: int = 1, labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None, created_at: datetime = EPOCH, manager: str = "kubectl-client-side-apply",
            changed_at: datetime | None = None) -> JsonObject:
        """Add a Deployment or StatefulSet as a deploy tool would have created it; return it (live, not a copy)."""
        with self._lock:
            if namespace not in self.namespaces:
                self.namespaces.append(namespace)
            selector = {"app": name}
            spec: JsonObject = {
                "replicas": replicas, "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": selector}, "spec": {"containers": [{"name": "svc", "image": f"{name}:1"}]}},
            }
            if kind == "statefulset":
                spec["serviceName"] = name
            obj = {
                "apiVersion": "apps/v1", "kind": KINDS[kind],
                "metadata": {
                    "name": name, "namespace": namespace, "uid": f"uid-{next(self._uids)}",
                    "resourceVersion": str(next(self._versions)), "generation": 1, "creationTimestamp": timestamp(created_at),
                    "labels": dict(labels or {}), "annotations": dict(annotations or {}),
                    "managedFields": [
                        _managed(manager, "Update", changed_at or created_at),
                        _managed("kube-controller-manager", "Update", datetime.now(timezone.utc), "status"),
                    ],
                },
                "spec": spec,
                "status": {"replicas": replicas, "readyReplicas": replicas},
            }
            self.objects[(namespace, kind, name)] = obj
            return obj

    def add_namespace(self, namespace: str) -> None:
        with self._lock:
            if namespace not in self.namespaces:
                self.namespaces.append(namespace)

    def add_scaled_object(self, namespace: str, name: str, target: str, kind: str | None = None) -> None:
        """Add a KEDA ScaledObject scaling ``target`` (a Deployment unless ``kind`` says otherwise)."""
        reference: JsonObject = {"name": target}
        if kind is not None:
            reference["kind"] = kind
        with self._lock:
            self.scaled_objects[(namespace, name)] = {
                "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{next(self._uids)}",
                             "resourceVersion": str(next(self._versions))},
                "spec": {"scaleTargetRef": reference, "minReplicaCount": 0, "maxReplicaCount": 5},
            }

    def get(self, namespace: str, kind: str, name: str) -> JsonObject:
        with self._lock:
            return copy.deepcopy(self.objects[(namespace, kind, name)])

    def scale(self, namespace: str, kind: str, name: str, replicas: int, *, manager: str = "kubectl") -> None:
        """Scale an object by hand, as ``kubectl scale`` does (the scale subresource)."""
        with self._lock:
            obj = self.objects[(namespace, kind, name)]
            obj["spec"]["replicas"] = replicas
            self._written(obj, manager, "scale")

    def annotate(self, namespace: str, kind: str, name: str, key: str, value: str | None, *, manager: str = "kubectl-annotate") -> None:
        """Set (or, with None, remove) an annotation by hand."""
        with self._lock:
            obj = self.objects[(namespace, kind, name)]
            if value is None:
                obj["metadata"]["annotations"].pop(key, None)
            else:
                obj["metadata"]["annotations"][key] = value
            self._written(obj, manager, "")

    def replicas(self) -> dict[str, int]:
        """Return {"NS/kind/name": spec.replicas} of every object."""
        with self._lock:
            return {f"{ns}/{kind}/{name}": obj["spec"]["replicas"] for (ns, kind, name), obj in sorted(self.objects.items())}

    def _written(self, obj: JsonObject, manager: str, subresource: str) -> None:
        metadata = obj["metadata"]
        metadata["resourceVersion"] = str(next(self._versions))
        now = datetime.now(timezone.utc)
        for entry in metadata["managedFields"]:
            if entry["manager"] == manager and entry.get("subresource", "") == subresource:
                entry["time"] = timestamp(now)
                break
        else:
            metadata["managedFields"].append(_managed(manager, "Update", now, subresource))
        obj["status"] = {"replicas": obj["spec"]["replicas"], "readyReplicas": obj["spec"]["replicas"]}

    # --- answering ---------------------------------------------------------------------

    def answer(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, JsonObject, float] | None:
        """Given one request, return (status, JSON body, seconds to wait first); None means "drop the connection"."""
        split = urlsplit(raw_path)
        query = {key: values[0] for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        authorized = headers.get("authorization") == f"Bearer {self.token}"
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            return 400, status(400, "BadRequest", "the body is not JSON"), 0.0
        delay = 0.0
        with self._lock:
            # Keep-alive connections outlive shutdown(), so the cap is enforced here, per request.
            if self._stopped.is_set() or len(self.requests) >= self.max_requests:
                threading.Thread(target=self.stop, daemon=True).start()
                return None
            self.requests.append(Request(method, split.path, query, headers.get("content-type", ""), authorized, parsed))
            for rule in [rule for rule in self.rules if rule.matches(method, split.path)]:
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                if rule.before is not None:
                    rule.before()
                delay += rule.delay_seconds
                if rule.status is not None:
                    return rule.status, status(rule.status, _reason(rule.status), "injected failure"), delay
            if not authorized:
                return 401, status(401, "Unauthorized", "Unauthorized"), delay
            code, answer = self._route(method, split.path, query, headers.get("content-type", ""), parsed)
            return code, copy.deepcopy(answer), delay

    def _route(self, method: str, path: str, query: dict[str, str], content_type: str, body: Any) -> tuple[int, JsonObject]:
        namespaced = re.fullmatch(r"/apis/apps/v1/namespaces/([^/]+)/(deployments|statefulsets)(?:/([^/]+))?", path)
        if namespaced:
            namespace, plural, name = namespaced.groups()
            kind = next(k for k, p in PLURALS.items() if p == plural)
            if name is None and method == "GET":
                return self._list_objects(kind, namespace, query)
            if name is not None:
                handler = {"GET": self._get, "PATCH": self._patch, "DELETE": self._delete}.get(method)
                if handler is not None:
                    return handler(namespace, kind, name, query, content_type, body)
        across = re.fullmatch(r"/apis/apps/v1/(deployments|statefulsets)", path)
        if across and method == "GET":
            return self._list_objects(next(k for k, p in PLURALS.items() if p == across.group(1)), None, query)
        if path == "/api/v1/namespaces" and method == "GET":
            items = [{"metadata": {"name": name, "uid": f"ns-{name}"}} for name in self.namespaces]
            return 200, self._page("NamespaceList", items, query)
        keda = re.fullmatch(r"/apis/keda.sh/v1alpha1/namespaces/([^/]+)/scaledobjects", path)
        if keda and method == "GET":
            if not self.keda_installed:
                return 404, status(404, "NotFound", "the server could not find the requested resource")
            items = [obj for (namespace, _), obj in sorted(self.scaled_objects.items()) if namespace == keda.group(1)]
            return 200, self._page("ScaledObjectList", items, query)
        events = re.fullmatch(r"/api/v1/namespaces/([^/]+)/events", path)
        if events and method == "POST":
            return self._create_event(events.group(1), body)
        return 404, status(404, "NotFound", f"the server could not find the requested resource ({method} {path})")

    def _page(self, kind: str, items: list[JsonObject], query: dict[str, str]) -> JsonObject:
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0) or len(items) or 1
        page: JsonObject = {"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": str(next(self._versions))},
                            "items": items[start:start + limit]}
        if start + limit < len(items):
            page["metadata"]["continue"] = str(start + limit)
        return page

    def _list_objects(self, kind: str, namespace: str | None, query: dict[str, str]) -> tuple[int, JsonObject]:
        try:
            selector = parse_selector(query.get("labelSelector", ""))
        except ValueError as error:
            return 400, status(400, "BadRequest", f"unable to parse requirement: {error}")
        items = [obj for (ns, k, _), obj in sorted(self.objects.items())
                 if k == kind and namespace in (None, ns) and selector(obj["metadata"].get("labels") or {})]
        return 200, self._page(f"{KINDS[kind]}List", items, query)

    def _not_found(self, kind: str, name: str) -> tuple[int, JsonObject]:
        return 404, status(404, "NotFound", f'{PLURALS[kind]}.apps "{name}" not found')

    def _get(self, namespace: str, kind: str, name: str, *_: Any) -> tuple[int, JsonObject]:
        obj = self.objects.get((namespace, kind, name))
        return (200, obj) if obj is not None else self._not_found(kind, name)

    def _patch(self, namespace: str, kind: str, name: str, query: dict[str, str], content_type: str, body: Any) -> tuple[int, JsonObject]:
        obj = self.objects.get((namespace, kind, name))
        if obj is None:
            return self._not_found(kind, name)
        if content_type.split(";")[0].strip() not in MERGE_TYPES:
            return 415, status(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}")
        if not isinstance(body, dict):
            return 400, status(400, "BadRequest", "a merge patch is a JSON object")
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            return 409, status(409, "Conflict", f'Operation cannot be fulfilled on {PLURALS[kind]}.apps "{name}": the object has '
                                                "been modified; please apply your changes to the latest version and try again")
        patched = merge_patch(copy.deepcopy(obj), body)
        patched["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
        self.objects[(namespace, kind, name)] = patched
        self._written(patched, query.get("fieldManager") or "unknown", "")
        return 200, patched

    def _delete(self, namespace: str, kind: str, name: str, *_: Any) -> tuple[int, JsonObject]:
        obj = self.objects.pop((namespace, kind, name), None)
        if obj is None:
            return self._not_found(kind, name)
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": {"name": name, "group": "apps", "kind": PLURALS[kind], "uid": obj["metadata"]["uid"]}}

    def _create_event(self, namespace: str, body: Any) -> tuple[int, JsonObject]:
        if not isinstance(body, dict) or not isinstance(body.get("involvedObject"), dict):
            return 422, status(422, "Invalid", "an Event needs an involvedObject")
        event = copy.deepcopy(body)
        metadata = event.setdefault("metadata", {})
        metadata["name"] = metadata.get("name") or f"{metadata.get('generateName', 'event.')}{next(self._uids):x}"
        metadata["namespace"] = namespace
        metadata["resourceVersion"] = str(next(self._versions))
        self.events.append(event)
        return 201, event


def _managed(manager: str, operation: str, at: datetime, subresource: str = "") -> JsonObject:
    entry: JsonObject = {"manager": manager, "operation": operation, "apiVersion": "apps/v1",
                         "time": timestamp(at), "fieldsType": "FieldsV1", "fieldsV1": {}}
    if subresource:
        entry["subresource"] = subresource
    return entry


def _reason(code: int) -> str:
    return {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 429: "TooManyRequests"}.get(code, "InternalError")


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386): objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """Given a label selector (``a=b,c!=d,e,!f,g in (x,y),h notin (z)``), return a test on labels. Raise ValueError."""
    requirements: list[Callable[[dict[str, str]], bool]] = []
    for part in re.findall(r"(?:[^,(]|\([^)]*\))+", text):
        part = part.strip()
        if match := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)", part):
            key, operator, value = match.groups()
            requirements.append(lambda labels, k=key, v=value, negate=operator == "!=": (labels.get(k) == v) != negate)
        elif match := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", part):
            key, operator, values = match.groups()
            options = {value.strip() for value in values.split(",")}
            requirements.append(lambda labels, k=key, o=options, negate=operator == "notin": (labels.get(k) in o) != negate)
        elif match := re.fullmatch(r"(!?)([\w./-]+)", part):
            negate, key = match.groups()
            requirements.append(lambda labels, k=key, n=bool(negate): (k in labels) != n)
        else:
            raise ValueError(f"bad requirement {part!r}")
    return lambda labels: all(requirement(labels) for requirement in requirements)


def _handler_for(server: KubeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # An idle keep-alive connection must not hold a handler thread for ever.
        timeout = 5

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            answered: tuple[int, JsonObject, float] | None
            try:
                answered = server.answer(self.command, self.path, headers, body)
            except Exception as error:  # a bug in the stand-in must show up as an answer, not a hang
                answered = 500, status(500, "InternalError", f"stand-in error: {error!r}"), 0.0
            if answered is None:
                self.close_connection = True
                return
            code, answer, delay = answered
            if delay and server._stopped.wait(delay):
                return
            payload = json.dumps(answer).encode()
            try:
                self.send_response(code)
                # lightkube turns an error into ApiError only for exactly this content type.
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_PATCH = do_POST = do_DELETE = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler



