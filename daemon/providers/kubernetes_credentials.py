"""Where the Kubernetes provider's credentials come from, and the client built from them.

Order: the provider's ``kubeconfig``, else ``$KUBECONFIG`` (its first file that exists), else
``~/.kube/config``, else the in-cluster service account. This is kubectl's order, not
lightkube's default (which tries the service account first): on a host that also runs pods,
an explicit kubeconfig must win.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path

import httpx2
import msgspec
import yaml
from lightkube import Client, KubeConfig, SingleConfig
from lightkube import ConfigError as LightkubeConfigError
from lightkube.config.kubeconfig import SERVICE_ACCOUNT

from daemon.provider_config import KubernetesProviderConfig
from daemon.providers import ProviderError
from daemon.providers.kubernetes import KubernetesProvider
from daemon.providers.kubernetes_objects import FIELD_MANAGER


def connect(name: str, config: KubernetesProviderConfig, environ: Mapping[str, str]) -> KubernetesProvider:
    """Given the provider's config and the environment, return a provider with a ready client.

    Raise ProviderError (a config error for the caller) if no usable credentials are found.
    """
    single, source = load_kube_config(config.kubeconfig, config.context, environ)
    timeout_seconds = config.timeout.approx_seconds()
    try:
        client = Client(single, timeout=httpx2.Timeout(timeout_seconds), field_manager=FIELD_MANAGER)
    except AssertionError:  # lightkube asserts that the context names a user
        raise ProviderError(f"context {single.context_name!r} of {source} names no user") from None
    except (LightkubeConfigError, OSError, ssl.SSLError, ValueError) as error:
        raise ProviderError(f"cannot use the credentials of context {single.context_name!r} of {source}: {error}") from None
    return KubernetesProvider(
        name=name, client=client, server=single.cluster.server, namespaces=config.namespaces, kinds=config.kinds,
        label_selector=config.label_selector, timeout_seconds=timeout_seconds,
    )


def load_kube_config(
    path: str, context: str, environ: Mapping[str, str], service_account: Path = Path(SERVICE_ACCOUNT)
) -> tuple[SingleConfig, str]:
    """Given the configured path and context, return (the chosen context's config, where it came from).

    Raise ProviderError, naming every place looked at, if there are no credentials or they are unusable.
    """
    home_config = _home(environ) / ".kube" / "config"
    listed = [Path(item).expanduser() for item in environ.get("KUBECONFIG", "").split(os.pathsep) if item]
    if path:
        kube_config, source = _read(Path(path).expanduser()), path
    elif listed:
        existing = next((item for item in listed if item.is_file()), None)
        if existing is None:
            raise ProviderError(f"no file of $KUBECONFIG exists ({', '.join(map(str, listed))})")
        kube_config, source = _read(existing), str(existing)
    elif home_config.is_file():
        kube_config, source = _read(home_config), str(home_config)
    elif (service_account / "token").is_file() and environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            kube_config, source = KubeConfig.from_service_account(service_account), "the in-cluster service account"
        except (LightkubeConfigError, KeyError, OSError) as error:
            raise ProviderError(f"cannot use the in-cluster service account {service_account}: {error}") from None
    else:
        raise ProviderError(
            "no Kubernetes credentials: the provider's kubeconfig is unset, $KUBECONFIG is unset, "
            f"{home_config} does not exist and this is not a pod with a service account ({service_account}/token)"
        )
    try:
        single = kube_config.get(context or None)
    except (LightkubeConfigError, KeyError) as error:
        raise ProviderError(f"{source}: context {context or '(current-context)'!r}: {error}") from None
    if single is None:  # pragma: no cover - get() without a default returns a config or raises
        raise ProviderError(f"{source}: no current-context")
    return single, source


def _home(environ: Mapping[str, str]) -> Path:
    try:
        return Path(environ.get("HOME") or Path.home())
    except (RuntimeError, KeyError):  # a user without a passwd entry and no $HOME, as in many containers
        return Path("/nonexistent")


def _read(path: Path) -> KubeConfig:
    try:
        return KubeConfig.from_file(path)
    except LightkubeConfigError:
        raise ProviderError(f"kubeconfig {path} does not exist") from None
    except OSError as error:
        raise ProviderError(f"cannot read kubeconfig {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        # The YAML error quotes the file, and the file holds tokens: give only the line.
        mark = getattr(error, "problem_mark", None)
        raise ProviderError(f"kubeconfig {path} is not valid YAML{f' (line {mark.line + 1})' if mark else ''}") from None
    except (KeyError, TypeError, AttributeError, msgspec.MsgspecError) as error:
        raise ProviderError(f"kubeconfig {path} is not a kubeconfig ({type(error).__name__} at {error})") from None
