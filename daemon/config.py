"""Load and validate the configuration: one frozen pydantic-settings tree.

Where the file comes from: ``--config``, else ``$RETENTIOND_CONFIG``, else
``/etc/retentiond/config.toml``; with no file at all the built-in defaults apply.
``RETENTIOND_<SECTION>__<KEY>`` environment variables override the file. Every
problem becomes a ``ConfigError`` that names the key path and the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from daemon.errors import ConfigError
from daemon.providers.command import CommandHooks
from daemon.providers.process import ProcessDeploymentSpec
from daemon.redact import check_http_url, describe_url
from policies.durations import Duration, Size
from policies.spec import ConfigPolicy, DiskPolicy, DurationField, OffhoursPolicy, RetentionPolicy, SizeField

DEFAULT_CONFIG_PATH = Path("/etc/retentiond/config.toml")
CONFIG_ENV = "RETENTIOND_CONFIG"


def default_store_home() -> Path:
    """Return ``$BENTOML_HOME``, else ``~/bentoml``, as BentoML itself does."""
    return Path(os.environ.get("BENTOML_HOME") or "~/bentoml").expanduser()


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSection(Section):
    home: Path = Field(default_factory=default_store_home)
    # Opt-in safety limits; without them a run deletes what the plan says and leaves no trash.
    trash_retention: DurationField | None = None
    max_shrink: SizeField | None = None
    archive_dir: Path | None = None
    # BentoCloud as the backup (daemon/guards.py): delete a version only when this bentocloud provider's
    # registry holds it; optionally push it first. Off by default.
    require_pushed: str | None = None
    require_pushed_cache: DurationField = Duration.parse("10m")
    push_before_delete: bool = False
    push_timeout: DurationField = Duration.parse("1h")
    # Remove version directories without their metadata file (killed saves) and BentoML tmp leftovers this old.
    collect_incomplete_after: DurationField | None = None

    @field_validator("collect_incomplete_after")
    @classmethod
    def _not_while_saving(cls, value: Duration | None) -> Duration | None:
        # A save in progress touches its files all the time; an hour of silence is the least that says "killed".
        if value is not None and value.approx_seconds() < 3600:
            raise ValueError("collect_incomplete_after must be at least 1h: a younger directory may be a save in progress")
        return value

    @field_validator("push_timeout")
    @classmethod
    def _some_time_to_push(cls, value: Duration) -> Duration:
        if value.approx_seconds() < 1:
            raise ValueError("push_timeout must be at least 1s")
        return value

    @model_validator(mode="after")
    def _push_needs_a_registry(self) -> StoreSection:
        if self.push_before_delete and self.require_pushed is None:
            raise ValueError("push_before_delete needs require_pushed (the bentocloud provider to push to)")
        return self

    @field_validator("max_shrink")
    @classmethod
    def _percent_only(cls, value: Size | None) -> Size | None:
        if value is not None and value.percent is None:
            raise ValueError("max_shrink is a percentage such as '50%'")
        return value

    @property
    def trash_retention_span(self) -> timedelta | None:
        if self.trash_retention is None or self.trash_retention.is_zero:
            return None
        return timedelta(seconds=self.trash_retention.approx_seconds())

    @field_validator("home", "archive_dir")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _archive_outside_the_store_layout(self) -> StoreSection:
        if self.archive_dir is not None:
            for subdir in ("models", "bentos"):
                if self.archive_dir.resolve().is_relative_to((self.home / subdir).resolve()):
                    raise ValueError(f"archive_dir {self.archive_dir} must not be inside {self.home / subdir}")
        return self


class DaemonSection(Section):
    timezone: str = "UTC"
    state_dir: Path = Path("/var/lib/retentiond")
    audit_log: Path = Path("/var/log/retentiond/audit.jsonl")
    audit_rotate_size: SizeField | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r} (e.g. 'UTC', 'Europe/Berlin')") from None
        return value

    @field_validator("state_dir", "audit_log")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("audit_rotate_size")
    @classmethod
    def _bytes_only(cls, value: Size | None) -> Size | None:
        if value is not None and value.bytes is None:
            raise ValueError("audit_rotate_size is a size such as '64MiB', not a percentage")
        return value

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class MetricsSection(Section):
    """Prometheus metrics: a textfile-collector file and/or an HTTP endpoint (off by default)."""

    textfile: Path | None = None
    listen_address: str = "127.0.0.1"
    listen_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("textfile")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


def _checked_url(value: SecretStr) -> SecretStr:
    check_http_url(value.get_secret_value())
    return value


# A URL whose path, query or userinfo may hold its secret: check-config shows scheme://host/… only.
SecretUrl = Annotated[
    SecretStr,
    AfterValidator(_checked_url),
    PlainSerializer(lambda value: describe_url(value.get_secret_value()), return_type=str, when_used="json"),
]
MAX_NOTIFY_TIMEOUT_SECONDS = 60
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class NotifySection(Section):
    """One message per run (daemon/notify_run.py); a failed or slow send never changes the run's outcome.

    ``every_run``: also send the webhook and Apprise message for daemon runs that had nothing to
    do (an ``apply`` always sends; healthchecks pings go out for every run either way).
    """

    webhook_url: SecretUrl | None = None
    webhook_headers: dict[str, SecretStr] = Field(default_factory=dict)
    healthchecks_url: SecretUrl | None = None
    apprise_urls: tuple[SecretStr, ...] = ()
    timeout: DurationField = Duration.parse("10s")
    every_run: bool = False

    @field_validator("webhook_headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, header in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if any(character in header.get_secret_value() for character in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} contains a line break")
        return value

    @field_validator("timeout")
    @classmethod
    def _bounded(cls, value: Duration) -> Duration:
        if not 0 < value.approx_seconds() <= MAX_NOTIFY_TIMEOUT_SECONDS:
            raise ValueError(f"timeout must be more than 0 and at most {MAX_NOTIFY_TIMEOUT_SECONDS}s, got {value}")
        return value

    @field_validator("apprise_urls")
    @classmethod
    def _apprise_installed(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        import importlib.util

        if value and importlib.util.find_spec("apprise") is None:
            raise ValueError("apprise_urls needs the apprise package: pip install 'retentiond[apprise]'")
        return value

    @model_validator(mode="after")
    def _headers_need_a_webhook(self) -> NotifySection:
        if self.webhook_headers and self.webhook_url is None:
            raise ValueError("webhook_headers is set but webhook_url is not")
        return self

    @property
    def timeout_seconds(self) -> float:
        return self.timeout.approx_seconds()


class BentoCloudProviderConfig(Section):
    """``type = "bentocloud"``: token and endpoint from here, else the environment, else ~/.yatai.yaml."""

    type: Literal["bentocloud"]
    endpoint: str | None = None
    api_token: SecretStr | None = None
    cluster: str = ""
    timeout: DurationField = Duration.parse("10s")


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

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from daemon.providers.kubernetes_objects import is_valid_namespace

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


class Settings(BaseSettings):
    """The whole effective configuration."""

    model_config = SettingsConfigDict(
        env_prefix="RETENTIOND_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    store: StoreSection = Field(default_factory=StoreSection)
    daemon: DaemonSection = Field(default_factory=DaemonSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    notify: NotifySection = Field(default_factory=NotifySection)
    retention: tuple[RetentionPolicy, ...] = ()
    disk: tuple[DiskPolicy, ...] = ()
    offhours: tuple[OffhoursPolicy, ...] = ()
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init values; the environment overrides them.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _policies_are_consistent(self) -> Settings:
        seen: set[str] = set()
        sections: list[tuple[str, Sequence[ConfigPolicy]]] = [
            ("retention", self.retention), ("disk", self.disk), ("offhours", self.offhours)
        ]
        for section, policies in sections:
            for index, policy in enumerate(policies):
                if policy.name in seen:
                    raise ValueError(f"{section}[{index}].name: policy name {policy.name!r} is used twice")
                seen.add(policy.name)
        for provider_name in self.providers:
            if not _is_valid_provider_name(provider_name):
                raise ValueError(f"providers.{provider_name}: a provider name is letters, digits, '-', '_' or '.'")
        if self.store.require_pushed is not None:
            named = self.providers.get(self.store.require_pushed)
            if not isinstance(named, BentoCloudProviderConfig):
                bentocloud = ", ".join(sorted(n for n, p in self.providers.items() if isinstance(p, BentoCloudProviderConfig)))
                what = "no provider" if named is None else f"provider of type {named.type!r}"
                raise ValueError(
                    f"store.require_pushed: {self.store.require_pushed!r} names {what}; it must name a provider of "
                    f"type \"bentocloud\" ({bentocloud or 'none configured'})"
                )
        for index, offhours in enumerate(self.offhours):
            if offhours.provider not in self.providers:
                known = ", ".join(sorted(self.providers)) or "none configured"
                raise ValueError(f"offhours[{index}].provider: no provider named {offhours.provider!r} ({known})")
        for index, policy in enumerate(self.retention):
            if policy.schedule is not None:
                # apscheduler (~10 ms to import) only when there is a schedule to check.
                from apscheduler.triggers.cron import CronTrigger

                try:
                    CronTrigger.from_crontab(policy.schedule, timezone=self.daemon.zone)
                except ValueError as error:
                    raise ValueError(f"retention[{index}].schedule: invalid cron {policy.schedule!r}: {error}") from None
        return self

    @property
    def policies(self) -> tuple[ConfigPolicy, ...]:
        """Every policy: retention, disk, off-hours."""
        return (*self.retention, *self.disk, *self.offhours)

    def policy_names(self) -> list[str]:
        return [policy.name for policy in self.policies]

    def unscheduled_warnings(self) -> dict[str, str]:
        """Return, per retention policy without ``schedule``, why ``retentiond run`` never runs it (a valid
        config for a timer unit, a silent no-op for the daemon: worth a warning, not an error)."""
        return {
            policy.name: (
                f"retention policy {policy.name!r} has no schedule: it runs only with `retentiond apply`; "
                f'add schedule = "..." (cron, e.g. "0 * * * *") to run it from the daemon'
            )
            for policy in self.retention
            if policy.schedule is None
        }


def _is_valid_provider_name(name: str) -> bool:
    # Imported here so that `check-config` without providers does not import the scanner (and PyYAML).
    from daemon.inventory import is_valid_tag_part

    return is_valid_tag_part(name.lower()) and "/" not in name


@dataclass(frozen=True)
class LoadedConfig:
    settings: Settings
    path: Path | None


def resolve_config_path(explicit: str | None) -> tuple[Path | None, bool]:
    """Return (path, required): the file to read and whether its absence is an error."""
    if explicit:
        return Path(explicit).expanduser(), True
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env).expanduser(), True
    return DEFAULT_CONFIG_PATH, False


def load_config(explicit: str | None = None) -> LoadedConfig:
    """Given ``--config`` (or None), return the validated config. Raise ConfigError naming file and key."""
    path, required = resolve_config_path(explicit)
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        data = _read_toml(path)
    elif required:
        raise ConfigError(f"config file {path} does not exist")
    else:
        path = None
    try:
        settings = Settings(**data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, path)) from None
    return LoadedConfig(settings=settings, path=path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config: {error.strerror}") from None


def describe_validation_error(error: ValidationError, path: Path | None) -> str:
    """Return one line per problem: ``<file>: <key.path>: <message>``."""
    where = str(path) if path else "built-in defaults"
    overrides = sorted(key for key in os.environ if key.startswith("RETENTIOND_") and key != CONFIG_ENV)
    if overrides:
        where += f" (with environment overrides {', '.join(overrides)})"
    lines = [f"invalid config in {where}:"]
    for problem in error.errors():
        key_path = format_key_path(problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {key_path or '(top level)'}: {message}")
    return "\n".join(lines)


def format_key_path(location: tuple[int | str, ...]) -> str:
    """Turn pydantic's ``('retention', 0, 'keep_last')`` into ``retention[0].keep_last``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
