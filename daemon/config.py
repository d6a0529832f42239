"""Load and validate the configuration: one frozen pydantic-settings tree.

Where the file comes from: ``--config``, else ``$RETENTIOND_CONFIG``, else
``/etc/retentiond/config.toml``; with no file at all the built-in defaults apply.
``RETENTIOND_<SECTION>__<KEY>`` environment variables override the file. Every
problem becomes a ``ConfigError`` that names the key path and the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from daemon.config_paths import AbsolutePath, systemd_directory
from daemon.errors import ConfigError
from daemon.provider_config import PROVIDER_TYPES, BentoCloudProviderConfig, ProviderConfig, Section
from daemon.redact import check_http_url, describe_url
from daemon.tags import is_valid_tag_part
from policies.durations import Duration, Size
from policies.model import StoreLimits
from policies.spec import ConfigPolicy, DiskPolicy, DurationField, OffhoursPolicy, RetentionPolicy, SizeField, refuse_zero

DEFAULT_CONFIG_PATH = Path("/etc/retentiond/config.toml")
CONFIG_ENV = "RETENTIOND_CONFIG"
ENV_PREFIX = "RETENTIOND_"
MESSAGE_CHARACTERS = 300
MAX_TRASH_RETENTION_SECONDS = 1000 * 365 * 86400


def default_store_home() -> Path:
    """Return ``$BENTOML_HOME``, else ``~/bentoml``, as BentoML itself does (``~`` is expanded by validation)."""
    return Path(os.environ.get("BENTOML_HOME") or "~/bentoml")


class StoreSection(Section):
    # Validated like a written value, so a relative $BENTOML_HOME is refused too.
    home: AbsolutePath = Field(default_factory=default_store_home, validate_default=True)
    # Opt-in safety limits; without them a run deletes what the plan says and leaves no trash.
    trash_retention: DurationField | None = None
    max_shrink: SizeField | None = None
    archive_dir: AbsolutePath | None = None
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
        refuse_zero(value, "would stop every run once a single version is gone; use e.g. '50%'")
        return value

    def limits(self, accept_shrink: bool = False) -> StoreLimits:
        """Return the store-wide settings a run decides with (``accept_shrink``: ``apply --accept-shrink``)."""
        percent = self.max_shrink.percent if self.max_shrink is not None else None
        return StoreLimits(self.trash_retention_span, percent, accept_shrink)

    @property
    def trash_retention_span(self) -> timedelta | None:
        if self.trash_retention is None or self.trash_retention.is_zero:
            return None
        # A thousand years is forever for a trash entry; longer would overflow ``now - span``.
        return timedelta(seconds=min(self.trash_retention.approx_seconds(), MAX_TRASH_RETENTION_SECONDS))

    @model_validator(mode="after")
    def _archive_outside_the_store_layout(self) -> StoreSection:
        if self.archive_dir is not None:
            try:
                archive = self.archive_dir.resolve()
                layout = [(self.home / subdir).resolve() for subdir in ("models", "bentos")]
            except (OSError, RuntimeError) as error:  # a symlink loop, a name too long
                raise ValueError(f"archive_dir {self.archive_dir}: cannot resolve: {error}") from None
            for directory in layout:
                if archive.is_relative_to(directory):
                    raise ValueError(f"archive_dir {self.archive_dir} must not be inside {directory}")
        return self


class DaemonSection(Section):
    timezone: str = "UTC"
    # Defaults follow systemd's StateDirectory=/LogsDirectory= when the unit sets them (daemon.config_paths).
    state_dir: AbsolutePath = Field(default_factory=lambda: systemd_directory("STATE_DIRECTORY", "/var/lib/retentiond"))
    audit_log: AbsolutePath = Field(
        default_factory=lambda: systemd_directory("LOGS_DIRECTORY", "/var/log/retentiond") / "audit.jsonl"
    )
    audit_rotate_size: SizeField | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name longer than the filesystem allows
            raise ValueError(f"unknown IANA timezone {value[:60]!r} (e.g. 'UTC', 'Europe/Berlin')") from None
        return value

    @field_validator("audit_rotate_size")
    @classmethod
    def _bytes_only(cls, value: Size | None) -> Size | None:
        if value is not None and value.bytes is None:
            raise ValueError("audit_rotate_size is a size such as '64MiB', not a percentage")
        refuse_zero(value, "would never rotate; leave audit_rotate_size out for that, or use e.g. '64MiB'")
        return value

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class MetricsSection(Section):
    """Prometheus metrics: a textfile-collector file and/or an HTTP endpoint (off by default)."""

    textfile: AbsolutePath | None = None
    listen_address: str = "127.0.0.1"
    listen_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("listen_address")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value[:60]!r} is not an IP address (e.g. '127.0.0.1', '::1', '0.0.0.0')") from None
        return value


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


class Settings(BaseSettings):
    """The whole effective configuration."""

    model_config = SettingsConfigDict(
        env_prefix="RETENTIOND_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # Validated from an empty table, so that an error in a default (a relative $BENTOML_HOME) is named store.home.
    store: StoreSection = Field(default_factory=dict, validate_default=True)
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
        # The file's contents arrive as init values; the environment overrides them. Overrides of one policy
        # table (RETENTIOND_RETENTION__0__KEEP_LAST) were applied to the file's tables already (daemon.config_env).
        if isinstance(env_settings, EnvSettingsSource):
            from daemon.config_env import is_indexed_override

            env_settings.env_vars = {name: value for name, value in env_settings.env_vars.items() if not is_indexed_override(name)}
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
    return is_valid_tag_part(name.lower()) and "/" not in name


@dataclass(frozen=True)
class LoadedConfig:
    settings: Settings
    path: Path | None


def resolve_config_path(explicit: str | None) -> tuple[Path | None, bool]:
    """Return (path, required): the file to read and whether its absence is an error."""
    if explicit:
        return _expand_config_path(explicit), True
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return _expand_config_path(from_env), True
    return DEFAULT_CONFIG_PATH, False


def _expand_config_path(text: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~user of an unknown user
        raise ConfigError(f"config file {_shorten(text)}: cannot expand ~: unknown user or no home directory") from None


def load_config(explicit: str | None = None) -> LoadedConfig:
    """Given ``--config`` (or None), return the validated config. Raise ConfigError naming file and key."""
    check_environment()
    path, required = resolve_config_path(explicit)
    data = _read_toml(path, required) if path is not None else None
    if data is None:
        path, data = None, {}
    from daemon.config_env import apply_indexed_overrides

    data = apply_indexed_overrides(data, os.environ, str(path) if path else "the built-in defaults")
    try:
        settings = Settings(**data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, path)) from None
    except SettingsError as error:
        # pydantic-settings could not decode an environment value (a section or list is JSON there).
        cause = f": {error.__cause__}" if error.__cause__ else ""
        raise ConfigError(f"invalid config in the environment ({', '.join(environment_overrides())}): {error}{cause}") from None
    except Exception as error:  # a validator bug must still be exit 78 naming the file, never a traceback
        where = str(path) if path else "built-in defaults"
        raise ConfigError(f"invalid config in {where}: {type(error).__name__}: {_shorten(str(error))}") from None
    return LoadedConfig(settings=settings, path=path)


def environment_overrides() -> list[str]:
    """Return the names of the ``RETENTIOND_*`` variables (any letter case, as pydantic-settings reads them) that override keys."""
    return sorted(key for key in os.environ if key.upper().startswith(ENV_PREFIX) and key != CONFIG_ENV)


def check_environment() -> None:
    """Raise ConfigError naming each ``RETENTIOND_*`` variable that is empty or names no section.

    pydantic-settings would read an empty ``RETENTIOND_STORE__HOME`` as the working directory
    and skip ``RETENTIOND_STOR__HOME`` silently.
    """
    problems = []
    for key in environment_overrides() + ([CONFIG_ENV] if CONFIG_ENV in os.environ else []):
        section = key[len(ENV_PREFIX):].split("__", 1)[0].lower()
        if os.environ[key] == "":
            problems.append(f"  {key}: the variable is empty; unset it, or give it a value")
        elif key != CONFIG_ENV and section not in Settings.model_fields:
            problems.append(f"  {key}: unknown key {section!r} (sections: {', '.join(Settings.model_fields)})")
    if problems:
        raise ConfigError("invalid config in the environment:\n" + "\n".join(problems))


def _read_toml(path: Path, required: bool) -> dict[str, Any] | None:
    """Return the file's TOML table, or None when an optional file is absent. Raise ConfigError naming the file."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8 text (byte {error.start}: {error.reason})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config: {error.strerror or error}") from None
    except ValueError as error:  # a NUL byte in the path given on the command line
        raise ConfigError(f"{_shorten(str(path))}: cannot read config: {error}") from None


def describe_validation_error(error: ValidationError, path: Path | None) -> str:
    """Return one line per problem: ``<file>: <key.path>: <message>``."""
    where = str(path) if path else "built-in defaults"
    overrides = environment_overrides()
    if overrides:
        where += f" (with environment overrides {', '.join(overrides)})"
    lines = [f"invalid config in {where}:"]
    for problem in error.errors():
        key_path = format_key_path(_without_provider_tag(problem["loc"]))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {_shorten(key_path or '(top level)')}: {_shorten(message)}")
    return "\n".join(lines)


def _shorten(text: str) -> str:
    """Cut ``text`` so that a megabyte-long value cannot flood the terminal or the journal."""
    return text if len(text) <= MESSAGE_CHARACTERS else f"{text[:MESSAGE_CHARACTERS]}…"


def _without_provider_tag(location: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop the step pydantic adds for the provider's ``type`` (``providers.x.command.list``): the file has no such table."""
    if len(location) > 2 and location[0] == "providers" and location[2] in PROVIDER_TYPES:
        return (*location[:2], *location[3:])
    return location


def format_key_path(location: tuple[int | str, ...]) -> str:
    """Turn pydantic's ``('retention', 0, 'keep_last')`` into ``retention[0].keep_last``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
