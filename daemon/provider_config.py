"""The configuration of deployment providers (``[providers.NAME]``), as plain validated values.

It sits below both ``daemon.config`` (which composes it into the settings tree) and
``daemon/providers/`` (which builds providers from it), so neither has to import the other's
floor. ``Section`` is the base of every config section: unknown keys are errors, values frozen.
"""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from daemon.config_paths import AbsolutePath, to_absolute_path
from policies.durations import Duration
from policies.spec import DurationField

DEPLOYMENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$"


NAME_PLACEHOLDER = "{name}"


MAX_WAIT_SECONDS = 24 * 3600


class CommandHooks(BaseModel):
    """The command line templates of one ``type = "command"`` provider."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    list: str
    terminate: str
    restart: str
    delete: str | None = None
    # Bounded: a timeout of 1e308 s overflows the wait, and inf would hold the store lock forever.
    timeout_seconds: float = Field(default=60, gt=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("list")
    @classmethod
    def _check_list(cls, template: str) -> str:
        split_template(template)
        return template

    @field_validator("terminate", "restart", "delete")
    @classmethod
    def _check_action(cls, template: str | None) -> str | None:
        # A template without {name} would act on the same thing whatever deployment was meant.
        if template is not None and NAME_PLACEHOLDER not in "".join(split_template(template)):
            raise ValueError(f"the template must contain {NAME_PLACEHOLDER}")
        return template


def split_template(template: str) -> list[str]:
    """Given a hook template, return its argv with placeholders intact. Raise ValueError if it is not a command line."""
    argv = shlex.split(template)
    if not argv:
        raise ValueError("the template is empty")
    return argv


class ProcessDeploymentSpec(BaseModel):
    """One locally run deployment, as declared under ``[providers.<name>]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=DEPLOYMENT_NAME_PATTERN)
    command: list[str] = Field(min_length=1)
    cwd: AbsolutePath | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # Bounded: a wait of 1e308 s overflows the thread timeout, and inf would never reach SIGKILL.
    stop_timeout_seconds: float = Field(default=30, ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False)
    log_file: AbsolutePath | None = None
    labels: dict[str, str] = Field(default_factory=dict)


_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_valid_namespace(name: str) -> bool:
    """Return True for a DNS label, the form every namespace name has."""
    return len(name) <= 63 and _NAMESPACE.match(name) is not None


MIN_TIMEOUT_SECONDS = 1


MAX_TIMEOUT_SECONDS = 3600


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_request_timeout(value: Duration) -> Duration:
    """Return a provider's request timeout. Raise ValueError unless it is 1s..1h.

    0s fails every request at once; a socket cannot wait for years (the timeval overflows).
    """
    if not MIN_TIMEOUT_SECONDS <= value.approx_seconds() <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"timeout {value} must be between 1s and 1h")
    return value


class BentoCloudProviderConfig(Section):
    """``type = "bentocloud"``: token and endpoint from here, else the environment, else ~/.yatai.yaml."""

    type: Literal["bentocloud"]
    endpoint: str | None = None
    api_token: SecretStr | None = None
    cluster: str = ""
    timeout: DurationField = Duration.parse("10s")

    @field_validator("timeout")
    @classmethod
    def _sensible_timeout(cls, value: Duration) -> Duration:
        return check_request_timeout(value)


class ProcessProviderConfig(Section):
    """``type = "process"``: local processes declared here (e.g. ``bentoml serve`` on a CI agent)."""

    type: Literal["process"]
    deployments: tuple[ProcessDeploymentSpec, ...] = ()


class CommandProviderConfig(CommandHooks):
    """``type = "command"``: shell hook templates (systemd units, docker, kubectl)."""

    type: Literal["command"]


class KubernetesProviderConfig(Section):
    """``type = "kubernetes"``: Deployments and StatefulSets of a cluster (daemon/providers/kubernetes.py).

    Credentials: ``kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``, else the in-cluster
    service account. No ``namespaces``: every namespace the credentials may list.
    """

    type: Literal["kubernetes"]
    kubeconfig: str = ""
    context: str = ""
    namespaces: tuple[str, ...] = ()
    kinds: tuple[Literal["deployment", "statefulset"], ...] = ("deployment", "statefulset")
    label_selector: str = ""
    timeout: DurationField = Duration.parse("10s")

    @field_validator("timeout")
    @classmethod
    def _sensible_timeout(cls, value: Duration) -> Duration:
        return check_request_timeout(value)

    @field_validator("kubeconfig")
    @classmethod
    def _absolute_kubeconfig(cls, value: str) -> str:
        # "" leaves the choice to $KUBECONFIG and ~/.kube/config; a relative file would depend on the working directory.
        return str(to_absolute_path(value)) if value else value

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not is_valid_namespace(name):
                raise ValueError(f"{name!r} is not a namespace name (lower case letters, digits and '-', at most 63)")
        return value

    @field_validator("kinds")
    @classmethod
    def _some_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one kind: 'deployment', 'statefulset'")
        return tuple(dict.fromkeys(value))


ProviderConfig = Annotated[
    BentoCloudProviderConfig | ProcessProviderConfig | CommandProviderConfig | KubernetesProviderConfig,
    Field(discriminator="type"),
]


PROVIDER_TYPES = ("bentocloud", "process", "command", "kubernetes")
