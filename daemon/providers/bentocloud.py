"""BentoCloud deployments over its REST API, spoken the way BentoML 1.4.39's own client speaks it.

Restart is what ``bentoml deployment update NAME`` does with no options: read the deployment,
rebuild the update body from its latest revision and PUT it back unchanged (REFERENCE.md §2).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from daemon.providers import RUNNING_STATUSES, DeploymentNotFound, ProviderError, TransientProviderError
from daemon.providers.retry import with_retries
from policies.model import Deployment

DEFAULT_ENDPOINT = "https://cloud.bentoml.com"
TOKEN_HEADER = "X-YATAI-API-TOKEN"
# Already up, or on the way up: restarting would only redeploy what is there.
STARTED_STATUSES = RUNNING_STATUSES | {"image-building", "image-build-succeeded"}
STOPPED_STATUSES = frozenset({"terminated", "terminating"})
# Kept short: an error body may be a whole HTML page from a proxy.
BODY_EXCERPT_CHARS = 200

JsonObject = dict[str, Any]


class BentoCloudProvider:
    """Deployments of one BentoCloud organisation, optionally restricted to one cluster."""

    def __init__(
        self,
        *,
        name: str,
        endpoint: str,
        api_token: str,
        cluster: str = "",
        timeout_seconds: float = 10,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 4,
        page_size: int = 100,
    ) -> None:
        self.name = name
        self._endpoint = endpoint.rstrip("/")
        self._api_token = api_token
        self._cluster = cluster
        self._timeout_seconds = timeout_seconds
        self._sleep = sleep
        self._attempts = attempts
        self._page_size = page_size
        # Names are unique per cluster only; remember where list() saw each one so that
        # actions go to that cluster and not to the organisation's default one.
        self._clusters_by_name: dict[str, set[str]] = {}
        self._client = httpx.Client(
            base_url=self._endpoint,
            headers={TOKEN_HEADER: api_token, "User-Agent": "retentiond"},
            timeout=timeout_seconds,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> BentoCloudProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def list(self) -> list[Deployment]:
        """Given the configured cluster (or all clusters), return every deployment. Raise ProviderError."""
        items: dict[tuple[str, str], JsonObject] = {}
        for item in self._list_items():
            items[(_cluster_name(item), _item_name(item))] = item
        self._clusters_by_name = {}
        for cluster, deployment_name in items:
            self._clusters_by_name.setdefault(deployment_name, set()).add(cluster)
        return [to_deployment(self.name, item) for item in items.values()]

    def terminate(self, name: str) -> None:
        """Given a deployment name, terminate it unless it is already stopping. Raise DeploymentNotFound."""
        deployment = self._get(name)
        if deployment.get("status") in STOPPED_STATUSES:
            return
        self._request("POST", f"{_path(name)}/terminate", f"terminate {name}", {"cluster": _cluster_name(deployment)})

    def restart(self, name: str) -> None:
        """Given a deployment name, update it with its unchanged configuration unless it is up. Raise ProviderError."""
        deployment = self._get(name)
        if deployment.get("status") in STARTED_STATUSES:
            return
        body = build_update_body(deployment)
        # BentoML's client also PUTs to the cluster the GET answered with, not the one it asked for.
        self._request("PUT", _path(name), f"restart {name}", {"cluster": _cluster_name(deployment)}, body)

    def delete(self, name: str) -> None:
        """Given a deployment name, delete it; one that is already gone counts as deleted. Raise ProviderError."""
        try:
            self._request("DELETE", _path(name), f"delete {name}", {"cluster": self._cluster_for(name)})
        except DeploymentNotFound:
            return

    def _get(self, name: str) -> JsonObject:
        return self._request("GET", _path(name), f"get {name}", {"cluster": self._cluster_for(name)})

    def _list_items(self) -> Iterator[JsonObject]:
        start = 0
        while True:
            query = {
                "cluster": self._cluster,
                # Like BentoML's client: all=true spans every cluster, and is only sent without one.
                "all": "" if self._cluster else "true",
                "count": str(self._page_size),
                "q": "",
                "search": "",
                "start": str(start),
            }
            page = self._request("GET", "/api/v2/deployments", "list deployments", query)
            items = page.get("items") or []
            if not isinstance(items, list):
                raise ProviderError("BentoCloud list deployments: the answer has no list of items")
            yield from items
            start += len(items)
            if not items or start >= int(page.get("total") or 0):
                return

    def _cluster_for(self, name: str) -> str:
        if self._cluster:
            return self._cluster
        clusters = self._clusters_by_name.get(name, set())
        if len(clusters) > 1:
            raise ProviderError(
                f"BentoCloud deployment {name!r} exists in clusters {', '.join(sorted(clusters))}; "
                f"set providers.{self.name}.cluster to say which one this provider manages"
            )
        return next(iter(clusters), "")

    def _request(self, method: str, path: str, what: str, query: Mapping[str, str], body: JsonObject | None = None) -> JsonObject:
        return with_retries(
            lambda: self._send_once(method, path, what, query, body),
            f"bentocloud {what}", attempts=self._attempts, sleep=self._sleep,
        )

    def _send_once(self, method: str, path: str, what: str, query: Mapping[str, str], body: JsonObject | None) -> JsonObject:
        """Given one request, return its JSON answer. Raise TransientProviderError if it may work on retry."""
        return send_once(
            self._client, method, path, what, endpoint=self._endpoint, api_token=self._api_token,
            timeout_seconds=self._timeout_seconds, query=query, body=body,
        )


def send_once(
    client: httpx.Client, method: str, path: str, what: str, *, endpoint: str, api_token: str, timeout_seconds: float,
    query: Mapping[str, str] | None = None, body: JsonObject | None = None,
) -> JsonObject:
    """Given one request to BentoCloud (deployments or the registry), return its answer, a JSON object.

    Raise TransientProviderError if it may work on retry (no answer, a transport error, 5xx, 429), else the
    ProviderError its status or body means (DeploymentNotFound for a missing record). The token never appears
    in a message.
    """
    try:
        response = client.request(method, path, params=query, json=body)
    except httpx.TimeoutException as error:
        raise TransientProviderError(f"BentoCloud {what}: no answer from {endpoint} within {timeout_seconds:g}s") from error
    except httpx.TransportError as error:
        raise TransientProviderError(_redact(f"BentoCloud {what}: {type(error).__name__}: {error}", api_token)) from error
    check_response(response, what, endpoint, api_token)
    try:
        answer = response.json()
    except ValueError as error:
        raise ProviderError(f"BentoCloud {what}: the answer is not JSON") from error
    if not isinstance(answer, dict):
        raise ProviderError(f"BentoCloud {what}: the answer is not a JSON object")
    return answer


def check_response(response: httpx.Response, what: str, endpoint: str, api_token: str) -> None:
    """Given an answer, return if it is a success. Raise the ProviderError that its status means otherwise."""
    status = response.status_code
    if status == 200:
        return
    excerpt = _redact(response.text[:BODY_EXCERPT_CHARS].strip(), api_token)
    # BentoCloud used to answer 400 for a missing record; BentoML's client accepts both.
    if status == 404 or (status == 400 and "record not found" in response.text):
        raise DeploymentNotFound(f"BentoCloud {what}: not found ({status})")
    if status in (401, 403):
        raise ProviderError(
            f"BentoCloud rejected the API token ({status}) at {endpoint} for {what}; "
            "check api_token, $BENTO_CLOUD_API_KEY or `bentoml cloud login`"
        )
    trace = f", trace id {response.headers['x-trace-id']}" if "x-trace-id" in response.headers else ""
    message = f"BentoCloud {what}: HTTP {status}{trace}: {excerpt}"
    # 429 asks to come back later, which is exactly what a retry does.
    if status >= 500 or status == 429:
        raise TransientProviderError(message)
    raise ProviderError(message)


def build_update_body(deployment: JsonObject) -> JsonObject:
    """Given a deployment as GET answers it, return the PUT body that redeploys it unchanged.

    Mirrors BentoML's ``DeploymentAPI._convert_schema_to_update_schema`` field for field, but
    passes the stored values through untouched (BentoML re-parses them and drops unknown keys).
    Raise ProviderError if the deployment has no revision, target, config or bento to reuse.
    """
    name = deployment.get("name", "?")
    targets = [target for target in ((deployment.get("latest_revision") or {}).get("targets") or []) if target]
    if len(targets) == 1:
        main = targets[0]
    else:
        main = next((target for target in targets if target.get("name") == "main"), None)
    if main is None or not main.get("config") or not main.get("bento"):
        raise ProviderError(f"BentoCloud restart {name}: its latest revision has no target with a config and a bento")
    config = main["config"]
    body: JsonObject = {key: config[key] for key in ("access_authorization", "envs", "secrets") if config.get(key) is not None}
    body["services"] = config.get("services") or {}
    body["bento"] = f"{main['bento']['repository']['name']}:{main['bento']['name']}"
    canary = _canary(deployment, targets)
    if canary is not None:
        body["canary"] = canary
    return body


def _canary(deployment: JsonObject, targets: list[JsonObject]) -> JsonObject | None:
    routing = (deployment.get("manifest") or {}).get("routing")
    canary: JsonObject | None = None
    weights: Mapping[str, int] = {}
    if routing is not None:
        canary = {key: routing[key] for key in ("route_type", "route_by") if routing.get(key) is not None}
        weights = routing.get("weights") or {}
    if len(targets) > 1:
        canary = canary if canary is not None else {}
        versions = canary.setdefault("versions", {})
        for target in targets:
            if target.get("name") != "main":
                versions[target["name"]] = _canary_version(target, weights.get(target["name"]))
    return canary


def _canary_version(target: JsonObject, weight: int | None) -> JsonObject:
    config = target.get("config") or {}
    bento = target.get("bento")
    version: JsonObject = {key: config[key] for key in ("envs", "secrets") if config.get(key) is not None}
    if config.get("services"):
        version["services"] = config["services"]
    if bento:
        # BentoML names the canary bento by its version but the main one by its name (equal on BentoCloud).
        version["bento"] = f"{bento['repository']['name']}:{bento['version']}"
    if weight is not None:
        version["weight"] = weight
    return version


def to_deployment(provider: str, item: JsonObject) -> Deployment:
    """Given one deployment of a list answer, return it as a Deployment. Raise ProviderError if it has no name."""
    labels = {str(label["key"]): str(label.get("value", "")) for label in item.get("labels") or [] if "key" in label}
    return Deployment(
        provider=provider,
        name=_item_name(item),
        status=str(item.get("status") or "unknown"),
        labels=labels,
        created_at=parse_instant(item.get("created_at")),
        updated_at=parse_instant(item.get("updated_at")),
        identity=str(item.get("uid") or ""),
    )


def parse_instant(value: object) -> datetime | None:
    """Given an API timestamp (RFC 3339, possibly with nanoseconds), return an aware UTC datetime or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _item_name(item: JsonObject) -> str:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ProviderError(f"BentoCloud list deployments: an item has no name (uid {item.get('uid')!r})")
    return name


def _cluster_name(item: JsonObject) -> str:
    return str((item.get("cluster") or {}).get("name") or "")


def _redact(message: str, api_token: str) -> str:
    return message.replace(api_token, "***") if api_token else message


def _path(name: str) -> str:
    return f"/api/v2/deployments/{quote(name, safe='')}"


def resolve_cloud_credentials(
    endpoint: str | None, api_token: str | None, environ: Mapping[str, str], bentoml_home: Path
) -> tuple[str, str]:
    """Given the configured values, the environment and BentoML's home, return (endpoint, api_token).

    The token comes from the first of: the config, ``$BENTO_CLOUD_API_KEY``, the current context of
    ``$BENTOML_HOME/.yatai.yaml`` (``$BENTOML_CLOUD_CONTEXT``, else ``current_context_name``). The
    endpoint is the configured one, else the one stored next to the token, else the public BentoCloud:
    a token never goes to an endpoint from another source unless the config says so.
    Raise ProviderError, naming every place looked at, if no token is found.
    """
    if api_token:
        return endpoint or DEFAULT_ENDPOINT, api_token
    if environ.get("BENTO_CLOUD_API_KEY"):
        return endpoint or environ.get("BENTO_CLOUD_API_ENDPOINT") or DEFAULT_ENDPOINT, environ["BENTO_CLOUD_API_KEY"]
    path = bentoml_home / ".yatai.yaml"
    contexts_config = read_yatai_config(path)
    context_name = environ.get("BENTOML_CLOUD_CONTEXT") or contexts_config.get("current_context_name") or "default"
    for context in contexts_config.get("contexts") or []:
        if isinstance(context, dict) and context.get("name") == context_name and context.get("api_token"):
            return endpoint or context.get("endpoint") or DEFAULT_ENDPOINT, str(context["api_token"])
    raise ProviderError(
        "no BentoCloud API token: looked at the provider's api_token, $BENTO_CLOUD_API_KEY and "
        f"context {context_name!r} of {path}; set one of them or run `bentoml cloud login`"
    )


def read_yatai_config(path: Path) -> JsonObject:
    """Given the path of BentoML's cloud config, return its content ({} if absent). Raise ProviderError if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ProviderError(f"cannot read {path}: {error.strerror}") from error
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as error:
        # The YAML error text quotes the file, and the file holds tokens: give only the line.
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ProviderError(f"{path} is not valid YAML{where}") from None
    return content if isinstance(content, dict) else {}
