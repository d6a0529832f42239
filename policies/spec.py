"""Policy declarations as the config states them, validated, immutable.

These pydantic models are part of the pure core: they hold values only. The daemon's
config loader composes them into its settings tree.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, PrivateAttr, field_validator, model_validator

from policies._timespec_items import resolve_zone
from policies.durations import Duration, Size, format_bytes
from policies.model import Artifact, Deployment, format_instant
from policies.retention import BUCKETS, KeepRules
from policies.windows import Holiday, TimeSpec


def _to_duration(value: Any) -> Duration:
    # Duration.parse and Size.parse raise ValueError for every other type, which pydantic reports with the key path.
    if isinstance(value, Duration):
        return value
    return Duration.parse(value)


def _to_size(value: Any) -> Size:
    if isinstance(value, Size):
        return value
    return Size.parse(value)


DurationField = Annotated[Duration, BeforeValidator(_to_duration), PlainSerializer(str, return_type=str)]
SizeField = Annotated[Size, BeforeValidator(_to_size), PlainSerializer(str, return_type=str)]
Count = Annotated[int, Field(ge=0, strict=True)]
MAX_INTERVAL_SECONDS = 365 * 86400
# fnmatch translates a pattern in time quadratic in its '[' characters: 100 000 of them would stall every run.
Glob = Annotated[str, Field(max_length=1024)]



def refuse_zero(value: Size | Duration | None, why: str) -> None:
    """Raise ValueError saying ``why`` when a limit is zero (a zero limit is a typo, not a wish)."""
    if value is not None and value.is_zero:
        raise ValueError(f"{value} {why}")


def refuse_longer_than_a_year(value: Duration, key: str) -> Duration:
    """Return an interval the daemon schedules by. Raise ValueError past a year (centuries overflow the scheduler's clock)."""
    if value.approx_seconds() > MAX_INTERVAL_SECONDS:
        raise ValueError(f"{key} {value} must be at most 1y")
    return value


READ_RECENTLY = "read recently"
KEEP_COUNT_KEYS = ("keep_last", *(f"keep_{name}" for name in BUCKETS))
KEEP_WITHIN_KEYS = ("keep_within", *(f"keep_within_{name}" for name in BUCKETS))


class PolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArtifactPolicy(PolicyModel):
    """What every artifact policy shares: which artifacts it selects and what it never touches."""

    name: Annotated[str, Field(min_length=1)]
    kinds: tuple[Literal["model", "bento"], ...] = ("model", "bento")
    match: tuple[Glob, ...] = ("*",)
    labels: dict[str, str] = Field(default_factory=dict)
    keep_labels: dict[str, str] = Field(default_factory=dict)
    min_age: DurationField = Duration.parse("1h")
    keep_used_within: DurationField | None = None
    max_delete_per_run: Annotated[int, Field(ge=1, strict=True)] | None = None
    max_delete_bytes_per_run: SizeField | None = None

    @field_validator("max_delete_bytes_per_run")
    @classmethod
    def _positive_byte_limit(cls, value: Size | None) -> Size | None:
        refuse_zero(value, "would refuse every deletion of this policy; leave the key out for no limit")
        return value

    @model_validator(mode="after")
    def _selects_something(self) -> ArtifactPolicy:
        if not self.kinds:
            raise ValueError(f"policy {self.name!r}: kinds must not be empty")
        if self.max_delete_bytes_per_run is not None and self.max_delete_bytes_per_run.bytes is None:
            raise ValueError(f"policy {self.name!r}: max_delete_bytes_per_run is a size such as '50GiB', not a percentage")
        return self

    def exceeds_limits(self, count: int, size_bytes: int) -> str | None:
        """Return why deleting ``count`` versions of ``size_bytes`` in one run is too much, or None."""
        if self.max_delete_per_run is not None and count > self.max_delete_per_run:
            return f"{count} versions exceed max_delete_per_run {self.max_delete_per_run}"
        limit = self.max_delete_bytes_per_run
        if limit is not None and limit.bytes is not None and size_bytes > limit.bytes:
            return f"{format_bytes(size_bytes)} exceed max_delete_bytes_per_run {limit}"
        return None

    def selects(self, artifact: Artifact) -> bool:
        """Return True when the artifact's kind, name and labels fall under this policy."""
        return self.selects_name(artifact.kind, artifact.name) and self.selects_labels(artifact)

    def selects_name(self, kind: str, name: str) -> bool:
        """Return True when versions of this kind and name fall under this policy, labels aside."""
        if kind not in self.kinds:
            return False
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.match)

    def selects_labels(self, artifact: Artifact) -> bool:
        """Return True when the artifact carries every label this policy selects on."""
        return all(artifact.labels.get(key) == value for key, value in self.labels.items())

    def read_recently(self, artifact: Artifact, cutoff: datetime | None) -> list[str]:
        """Return the ``keep_used_within`` reason when the artifact's files were read after ``cutoff``."""
        read_at = artifact.last_read_at
        if cutoff is None or read_at is None or not read_at > cutoff:
            return []
        return [f"{READ_RECENTLY} (last read {format_instant(read_at)}, within keep_used_within {self.keep_used_within})"]

    def pinning_labels(self, artifact: Artifact) -> list[str]:
        """Return the ``keep_labels`` pairs the artifact carries (value ``*`` means any value)."""
        pins = []
        for key, value in self.keep_labels.items():
            if key in artifact.labels and value in ("*", artifact.labels[key]):
                pins.append(f"label {key}={artifact.labels[key]}")
        return pins


class RetentionPolicy(ArtifactPolicy):
    """One ``[[retention]]`` block: restic-style keep rules per artifact name."""

    keep_last: Count = 0
    keep_hourly: Count = 0
    keep_daily: Count = 0
    keep_weekly: Count = 0
    keep_monthly: Count = 0
    keep_yearly: Count = 0
    keep_within: DurationField | None = None
    keep_within_hourly: DurationField | None = None
    keep_within_daily: DurationField | None = None
    keep_within_weekly: DurationField | None = None
    keep_within_monthly: DurationField | None = None
    keep_within_yearly: DurationField | None = None
    keep_newer_than: DurationField | None = None
    allow_remove_all: bool = False
    schedule: str | None = None

    @model_validator(mode="after")
    def _has_a_keep_rule(self) -> RetentionPolicy:
        # keep_newer_than = "0s" keeps nothing, like keep_last = 0.
        if self.rules().is_empty() and (self.keep_newer_than is None or self.keep_newer_than.is_zero):
            keys = ", ".join((*KEEP_COUNT_KEYS, *KEEP_WITHIN_KEYS, "keep_newer_than"))
            raise ValueError(
                f"retention policy {self.name!r} has no keep rule, so it would delete everything; "
                f"set at least one of {keys}"
            )
        return self

    def rules(self) -> KeepRules:
        """Return the restic-style counting and window rules of this policy."""
        return KeepRules(
            last=self.keep_last,
            hourly=self.keep_hourly,
            daily=self.keep_daily,
            weekly=self.keep_weekly,
            monthly=self.keep_monthly,
            yearly=self.keep_yearly,
            within=self.keep_within,
            within_hourly=self.keep_within_hourly,
            within_daily=self.keep_within_daily,
            within_weekly=self.keep_within_weekly,
            within_monthly=self.keep_within_monthly,
            within_yearly=self.keep_within_yearly,
        )


class DiskPolicy(ArtifactPolicy):
    """One ``[[disk]]`` block: evict the oldest unprotected versions under disk pressure or over budget.

    Watermarks are the used share (``85%``) or used bytes of the filesystem holding the
    store: cleaning starts above ``high_watermark`` and goes on until below
    ``low_watermark`` (default: the high watermark). ``max_store_size`` is a budget for
    the store itself (bytes, or a share of the filesystem).
    """

    high_watermark: SizeField | None = None
    low_watermark: SizeField | None = None
    max_store_size: SizeField | None = None
    check_interval: DurationField = Duration.parse("10s")
    predict_full_within: DurationField | None = None

    @field_validator("high_watermark")
    @classmethod
    def _high_above_zero(cls, value: Size | None) -> Size | None:
        refuse_zero(value, "would count any used byte as pressure and evict every unprotected version; use e.g. '85%'")
        return value

    @field_validator("low_watermark")
    @classmethod
    def _low_above_zero(cls, value: Size | None) -> Size | None:
        refuse_zero(value, "can never be reached, so every unprotected version would be evicted; use e.g. '75%'")
        return value

    @field_validator("max_store_size")
    @classmethod
    def _budget_above_zero(cls, value: Size | None) -> Size | None:
        refuse_zero(value, "as a budget would evict every unprotected version; use e.g. '200GiB' or '50%'")
        return value

    @field_validator("check_interval")
    @classmethod
    def _check_within_a_year(cls, value: Duration) -> Duration:
        return refuse_longer_than_a_year(value, "check_interval")

    @field_validator("predict_full_within")
    @classmethod
    def _horizon_above_zero(cls, value: Duration | None) -> Duration | None:
        refuse_zero(value, "predicts nothing; leave predict_full_within out to turn prediction off")
        return value

    @model_validator(mode="after")
    def _watermarks_are_consistent(self) -> DiskPolicy:
        if self.high_watermark is None and self.max_store_size is None:
            raise ValueError(f"disk policy {self.name!r} needs high_watermark or max_store_size")
        if self.low_watermark is not None and self.high_watermark is None:
            raise ValueError(f"disk policy {self.name!r}: low_watermark needs a high_watermark")
        if self.predict_full_within is not None and self.high_watermark is None:
            raise ValueError(f"disk policy {self.name!r}: predict_full_within needs a high_watermark")
        high, low = self.high_watermark, self.low_watermark
        if high is not None and low is not None and not _below(low, high):
            raise ValueError(f"disk policy {self.name!r}: low_watermark {low} must be below high_watermark {high}")
        if self.check_interval.approx_seconds() < 1:
            raise ValueError(f"disk policy {self.name!r}: check_interval must be at least 1s")
        return self


def _below(low: Size, high: Size) -> bool:
    """Return False when ``low`` is not below ``high``; sizes of different units are checked at run time."""
    if (low.percent is None) != (high.percent is None):
        return True
    return (low.percent or low.bytes or 0) < (high.percent or high.bytes or 0)


EXCLUDE_LABEL = "retentiond/exclude"
EXCLUDE_UNTIL_LABEL = "retentiond/exclude-until"


class OffhoursPolicy(PolicyModel):
    """One ``[[offhours]]`` block: terminate matching deployments in downtime, restart what we stopped after.

    Exactly one of ``downtime`` and ``uptime`` (outside uptime = downtime). ``holidays``
    are dates or ``date..date`` ranges in ``timezone`` and are downtime all day.
    """

    name: Annotated[str, Field(min_length=1)]
    provider: Annotated[str, Field(min_length=1)]
    match: tuple[Glob, ...] = ("*",)
    exclude: tuple[Glob, ...] = ()
    downtime: str | None = None
    uptime: str | None = None
    holidays: tuple[str, ...] = ()
    timezone: str = "UTC"
    grace_period: DurationField = Duration.parse("15m")
    delete_after: DurationField | None = None
    enforce: bool = False
    reconcile_interval: DurationField = Duration.parse("5m")
    # What one deployment of this policy costs per hour while it runs, in any one currency: with it,
    # the hours it was down (terminated by this policy) become money saved.
    hourly_cost: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    _window: TimeSpec = PrivateAttr()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if resolve_zone(value) is None:
            raise ValueError(f"unknown IANA timezone {value!r}")
        return value

    @field_validator("delete_after")
    @classmethod
    def _delete_after_above_zero(cls, value: Duration | None) -> Duration | None:
        refuse_zero(value, "would delete a deployment as soon as it is terminated, so it never restarts; use e.g. '30d'")
        return value

    @field_validator("reconcile_interval")
    @classmethod
    def _reconcile_at_least_a_second(cls, value: Duration) -> Duration:
        if value.approx_seconds() < 1:
            raise ValueError(f"reconcile_interval {value} must be at least 1s (shorter re-runs the policy without pause)")
        return refuse_longer_than_a_year(value, "reconcile_interval")

    @field_validator("downtime", "uptime")
    @classmethod
    def _valid_spec(cls, value: str | None) -> str | None:
        if value is not None:
            TimeSpec.parse(value)
        return value

    @field_validator("holidays")
    @classmethod
    def _valid_holidays(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for holiday in value:
            Holiday.parse(holiday)
        return value

    @model_validator(mode="after")
    def _parse_window(self) -> OffhoursPolicy:
        if (self.downtime is None) == (self.uptime is None):
            raise ValueError(f"off-hours policy {self.name!r} needs exactly one of downtime and uptime")
        text = self.downtime if self.downtime is not None else self.uptime
        assert text is not None
        self._window = TimeSpec.parse(text, self.holidays, self.timezone, invert=self.uptime is not None)
        return self

    @property
    def window(self) -> TimeSpec:
        """The downtime as a TimeSpec (an uptime spec comes inverted; holidays are downtime)."""
        return self._window

    def describe_window(self, at: datetime) -> str:
        """Return why ``at`` is (or is not) downtime, in the words of the config."""
        holiday = self._window.holiday_at(at)
        if holiday is not None:
            return f"holiday {holiday} (downtime all day)"
        return f"downtime {self.downtime}" if self.downtime is not None else f"outside uptime {self.uptime}"

    def selects(self, deployment: Deployment) -> bool:
        """Return True for deployments of this policy's provider whose name matches (exclusions aside)."""
        if deployment.provider != self.provider:
            return False
        return any(fnmatch.fnmatchcase(deployment.name, pattern) for pattern in self.match)

    def excluding_pattern(self, deployment: Deployment) -> str | None:
        """Return the ``exclude`` pattern that leaves this deployment alone, or None."""
        return next((pattern for pattern in self.exclude if fnmatch.fnmatchcase(deployment.name, pattern)), None)


ConfigPolicy = RetentionPolicy | DiskPolicy | OffhoursPolicy
