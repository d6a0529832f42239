"""Ask BentoCloud's registry whether it holds a model or bento version, as BentoML 1.4.39's client asks.

``RestApiClientV1.get_model`` / ``get_bento`` (bentoml/_internal/cloud/client.py) send
``GET /api/v1/model_repositories/{name}/models/{version}`` and
``GET /api/v1/bento_repositories/{name}/bentos/{version}`` with the ``X-YATAI-API-TOKEN``
header; 404 (or 400 with "record not found") means the registry has no such version, and an
answer (``ModelSchema`` / ``BentoSchema``) carries ``upload_status``, one of ``UploadStatus``:
pending, uploading, success, failed. ``bentoml push`` itself skips a version whose status is
"success": that is what "held" means here.

Only "held" answers are remembered, for ``store.require_pushed_cache``, in
``<state_dir>/bentocloud-held.json`` (per endpoint): a version that was pushed stays pushed,
while one that is missing may be pushed at any moment.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import structlog

from daemon.errors import ConfigError
from daemon.files import write_file_atomically
from daemon.providers import DeploymentNotFound, ProviderError
from daemon.providers.bentocloud import TOKEN_HEADER, resolve_cloud_credentials, send_once
from daemon.providers.retry import with_retries
from policies.model import format_instant

if TYPE_CHECKING:
    from daemon.config import Settings

log = structlog.get_logger("retentiond")
CACHE_FILE = "bentocloud-held.json"
_PATHS = {"model": ("model_repositories", "models"), "bento": ("bento_repositories", "bentos")}
VersionKey = tuple[str, str, str]


class CloudRegistry:
    """The model and bento registry of one BentoCloud organisation."""

    def __init__(
        self,
        *,
        provider: str,
        endpoint: str,
        api_token: str,
        timeout_seconds: float = 10,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 4,
    ) -> None:
        self.provider = provider
        self.endpoint = endpoint.rstrip("/")
        self.api_token = api_token
        self._timeout_seconds = timeout_seconds
        self._sleep = sleep
        self._attempts = attempts
        self._client = httpx.Client(
            base_url=self.endpoint,
            headers={TOKEN_HEADER: api_token, "User-Agent": "retentiond"},
            timeout=timeout_seconds,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def upload_status(self, kind: str, name: str, version: str) -> str | None:
        """Given a version, return its ``upload_status`` in the registry, or None if it has no such version.

        Raise ProviderError (TransientProviderError after the retries ran out) if the registry cannot be asked.
        """
        what = f"get {kind} {name}:{version}"
        repositories, versions = _PATHS[kind]
        path = f"/api/v1/{repositories}/{quote(name, safe='')}/{versions}/{quote(version, safe='')}"
        try:
            answer = with_retries(lambda: self._get_once(path, what), f"bentocloud {what}", attempts=self._attempts, sleep=self._sleep)
        except DeploymentNotFound:
            return None
        status = answer.get("upload_status")
        if not isinstance(status, str):
            raise ProviderError(f"BentoCloud {what}: the answer has no upload_status")
        if answer.get("version", version) != version:
            # Held means that exact version; an answer about another one proves nothing.
            raise ProviderError(f"BentoCloud {what}: the answer is about version {answer.get('version')!r}")
        return status

    def _get_once(self, path: str, what: str) -> dict[str, object]:
        return send_once(
            self._client, "GET", path, what, endpoint=self.endpoint, api_token=self.api_token,
            timeout_seconds=self._timeout_seconds,
        )


def open_registry(settings: Settings) -> CloudRegistry:
    """Given a config with ``store.require_pushed``, return its provider's registry (not yet contacted).

    Raise ConfigError, naming the provider, if no API token can be found.
    """
    from daemon.provider_config import BentoCloudProviderConfig

    name = settings.store.require_pushed or ""
    config = settings.providers[name]
    assert isinstance(config, BentoCloudProviderConfig)  # the config validator ensures it
    try:
        endpoint, token = resolve_cloud_credentials(
            config.endpoint, config.api_token.get_secret_value() if config.api_token else None, os.environ, settings.store.home
        )
    except ProviderError as error:
        raise ConfigError(f"providers.{name}: {error}") from None
    return CloudRegistry(provider=name, endpoint=endpoint, api_token=token, timeout_seconds=config.timeout.approx_seconds())


class HeldCache:
    """Versions the registry said it holds, each until ``ttl`` after it said so (one file per endpoint)."""

    def __init__(self, path: Path | None, endpoint: str, ttl: timedelta, held: dict[str, datetime]) -> None:
        self.path = path
        self.endpoint = endpoint
        self.ttl = ttl
        self._held = held
        self._changed = False

    @classmethod
    def load(cls, state_dir: Path, endpoint: str, ttl: timedelta, now: datetime) -> HeldCache:
        """Return the unexpired entries for ``endpoint``; a missing or damaged file is an empty cache."""
        path = state_dir / CACHE_FILE
        if ttl <= timedelta(0):
            return cls(None, endpoint, ttl, {})
        held: dict[str, datetime] = {}
        try:
            stored = json.loads(path.read_text()).get(endpoint) or {}
            for key, stamp in stored.items():
                at = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
                if now - ttl < at <= now:
                    held[str(key)] = at
        except (OSError, ValueError, AttributeError, TypeError):
            held = {}
        return cls(path, endpoint, ttl, held)

    def holds(self, key: VersionKey) -> bool:
        return _text(key) in self._held

    def remember(self, key: VersionKey, at: datetime) -> None:
        if self.path is not None:
            self._held[_text(key)] = at
            self._changed = True

    def save(self) -> None:
        """Write the entries back if they changed (best effort: a failure is logged, the run goes on)."""
        if self.path is None or not self._changed:
            return
        try:
            try:
                content = json.loads(self.path.read_text())
                content = content if isinstance(content, dict) else {}
            except (OSError, ValueError):
                content = {}
            content[self.endpoint] = {key: format_instant(at) for key, at in self._held.items()}
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            write_file_atomically(self.path, json.dumps(content).encode())
            self._changed = False
        except OSError as error:
            log.warning("registry_cache.write_failed", path=str(self.path), error=error.strerror or str(error))


def _text(key: VersionKey) -> str:
    return "/".join(key)


def ask_registry(
    registry: CloudRegistry, cache: HeldCache, keys: Sequence[VersionKey], now: datetime
) -> tuple[dict[VersionKey, str | None], str | None]:
    """Given versions, return their ``upload_status`` (None: not in the registry) and why asking failed, if it did.

    Held answers come from and go to ``cache``. At the first failure the remaining versions are not
    asked (each would wait for the same timeouts and retries): they are left out of the answers.
    """
    statuses: dict[VersionKey, str | None] = {}
    for key in keys:
        if cache.holds(key):
            statuses[key] = "success"
            continue
        try:
            status = registry.upload_status(*key)
        except ProviderError as error:
            return statuses, str(error)
        statuses[key] = status
        if status == "success":
            cache.remember(key, now)
    return statuses, None
