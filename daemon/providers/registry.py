"""Build the configured providers. A provider that cannot be set up (no token) is a config error."""

from __future__ import annotations

import os

from daemon.config import Settings
from daemon.errors import ConfigError
from daemon.provider_config import (
    BentoCloudProviderConfig,
    CommandHooks,
    CommandProviderConfig,
    KubernetesProviderConfig,
    ProcessProviderConfig,
)
from daemon.providers import Provider, ProviderError
from daemon.providers.command import CommandProvider
from daemon.providers.process import ProcessProvider


def build_providers(settings: Settings, only: set[str] | None = None) -> dict[str, Provider]:
    """Given the config, return a provider per ``[providers.NAME]`` (or those in ``only``).

    Raise ConfigError, naming ``providers.NAME``, if one cannot be set up.
    """
    providers: dict[str, Provider] = {}
    for name, config in settings.providers.items():
        if only is not None and name not in only:
            continue
        try:
            providers[name] = _build(name, config, settings)
        except ProviderError as error:
            raise ConfigError(f"providers.{name}: {error}") from None
    return providers


def _build(
    name: str,
    config: BentoCloudProviderConfig | ProcessProviderConfig | CommandProviderConfig | KubernetesProviderConfig,
    settings: Settings,
) -> Provider:
    if isinstance(config, KubernetesProviderConfig):
        return _build_kubernetes(name, config)
    if isinstance(config, BentoCloudProviderConfig):
        from daemon.providers.bentocloud import BentoCloudProvider, resolve_cloud_credentials

        endpoint, token = resolve_cloud_credentials(
            config.endpoint,
            config.api_token.get_secret_value() if config.api_token else None,
            os.environ,
            settings.store.home,
        )
        return BentoCloudProvider(
            name=name, endpoint=endpoint, api_token=token, cluster=config.cluster,
            timeout_seconds=config.timeout.approx_seconds(),
        )
    if isinstance(config, ProcessProviderConfig):
        return ProcessProvider(name=name, deployments=config.deployments, state_dir=settings.daemon.state_dir / "processes")
    hooks = CommandHooks(**config.model_dump(exclude={"type"}))
    return CommandProvider(name=name, hooks=hooks)


def _build_kubernetes(name: str, config: KubernetesProviderConfig) -> Provider:
    # lightkube is an optional extra, imported only when a kubernetes provider is used.
    try:
        from daemon.providers.kubernetes_credentials import connect
    except ImportError as error:
        if (error.name or "").split(".")[0] not in ("lightkube", "httpx2", "msgspec"):
            raise
        raise ProviderError(
            f"type \"kubernetes\" needs the lightkube client, which is not installed ({error.name} is missing); "
            "install it with: pip install 'retentiond[kubernetes]'"
        ) from None
    return connect(name, config, os.environ)
