"""Any TOML value of any type at any config key: exit 78 naming the key path, or accepted and usable.

The key set is the real one: every key of config.example.toml (loaded and walked), plus every
field of each section, policy kind and provider kind that the example leaves out. A generated
value replaces one key; the file is written with tomli-w and loaded like a user's file. An
accepted config must also survive what the commands do next (plan on a small store, status,
check-config's dump, the daemon's triggers, the Size and Duration arithmetic).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from apscheduler.triggers.interval import IntervalTrigger
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from daemon.config import DaemonSection, MetricsSection, NotifySection, Settings, StoreSection, format_key_path, load_config
from daemon.errors import ConfigError
from daemon.provider_config import (
    BentoCloudProviderConfig,
    CommandProviderConfig,
    KubernetesProviderConfig,
    ProcessDeploymentSpec,
    ProcessProviderConfig,
)
from daemon.runner import make_plan
from daemon.schedule import WindowTrigger, retention_trigger
from daemon.status import collect_status
from policies import DiskSample, DiskUsage
from policies.disk import disk_target
from policies.durations import Duration, Size
from policies.spec import DiskPolicy, OffhoursPolicy, RetentionPolicy
from tests.fakestore import add_model, make_home

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 10, tzinfo=timezone.utc)
Key = tuple[str | int, ...]

# The model behind each table of the example, to add the keys the example does not show.
MODELS: dict[Key, type[BaseModel]] = {
    ("store",): StoreSection,
    ("daemon",): DaemonSection,
    ("metrics",): MetricsSection,
    ("notify",): NotifySection,
    ("retention", 0): RetentionPolicy,
    ("retention", 1): RetentionPolicy,
    ("disk", 0): DiskPolicy,
    ("offhours", 0): OffhoursPolicy,
    ("providers", "cloud"): BentoCloudProviderConfig,
    ("providers", "agent"): ProcessProviderConfig,
    ("providers", "agent", "deployments", 0): ProcessDeploymentSpec,
    ("providers", "units"): CommandProviderConfig,
    ("providers", "k8s"): KubernetesProviderConfig,
}


def example_config(home: Path, work: Path) -> dict[str, Any]:
    """config.example.toml, pointed at a small store under ``work`` and kept off the network."""
    config = tomllib.loads((REPO / "config.example.toml").read_text())
    config["store"].update(home=str(home), archive_dir=str(work / "archive"))
    config["daemon"].update(state_dir=str(work / "state"), audit_log=str(work / "audit.jsonl"))
    config["metrics"]["textfile"] = str(work / "metrics.prom")
    config["providers"]["cloud"]["endpoint"] = "http://127.0.0.1:9"
    # The example shows this provider commented out (it needs the kubernetes extra).
    config["providers"]["k8s"] = {"type": "kubernetes", "kubeconfig": str(work / "kubeconfig"), "namespaces": ["staging"]}
    # The process provider lists from its state file: planning off-hours needs no network.
    config["offhours"][0]["provider"] = "agent"
    return config


def walk(value: Any, prefix: Key = ()) -> Iterator[Key]:
    """Yield the path of every key, table and array element below ``value``."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from walk(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from walk(child, (*prefix, index))


def all_keys(config: dict[str, Any]) -> list[Key]:
    keys = list(walk(config))
    for table, model in MODELS.items():
        keys += [(*table, field) for field in model.model_fields if (*table, field) not in keys]
    keys += [(section,) for section in Settings.model_fields if (section,) not in keys]
    return keys


def substitute(config: dict[str, Any], key: Key, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(config)
    target: Any = changed
    for part in key[:-1]:
        target = target[part]
    target[key[-1]] = value
    return changed


# Text that validators look at closely, besides arbitrary text.
NOTABLE_TEXT = [
    "", " ", "0", "85", "0.85", "-1", "1e400", "nan", "inf", "0s", "1s", "90s", "1d12h", "3M", "1000y", "1001y",
    "99999999999999999999y", "0B", "1B", "1.5B", "0%", "0.0%", "100%", "100.1%", "1e-9%", "85 %", "200GiB",
    "99999999999999999999PB", "/tmp/retentiond-x", "~/x", "~nosuchuser/x", "relative/dir", ".", "/", "\0",
    "UTC", "Europe/Berlin", "europe/berlin", "Mars/Olympus", "../../etc/passwd", "127.0.0.1", "::1", "0.0.0.0",
    "localhost", "256.1.1.1", "0 * * * *", "61 * * * *", "* * * * * *", "model", "bento", "always", "never",
    "Mon-Fri 20:00-07:00 Europe/Berlin", "Mon-Fri 25:00-07:00 UTC", "[z-a]", "[", "*", "{name}", "ls {name}",
    "'unbalanced", "bentocloud", "process", "command", "kubernetes", "a" * 5000, "é" * 300, "\U0001f600",
]
scalars = st.one_of(
    st.sampled_from(NOTABLE_TEXT),
    st.text(max_size=40),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 65535, 65536, 2**63 - 1, 2**63, 10**30]),
    st.floats(),
    st.sampled_from([0.0, -0.0, 0.85, 1.5, float("nan"), float("inf"), -float("inf"), 1e308, 5e-324]),
    st.booleans(),
    st.dates(),
    st.times(),
    st.datetimes(),
    st.datetimes(timezones=st.just(timezone(timedelta(hours=2)))),
)
# Well-formed values of each kind, so that a good share of the configs is accepted and then used.
plausible = st.one_of(
    st.builds("{}{}".format, st.integers(0, 10**6), st.sampled_from(["s", "m", "h", "d", "w", "mo", "y"])),
    st.builds("{}{}".format, st.integers(0, 10**6), st.sampled_from(["B", "KB", "MiB", "GiB", "TB"])),
    st.builds("{:.3f}%".format, st.floats(0, 100)),
    st.builds("/tmp/retentiond-{}".format, st.text("abc/._-", max_size=12)),
    st.integers(0, 100),
    st.lists(st.sampled_from(["*", "iris", "model", "bento", "staging-*"]), max_size=3),
)
toml_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(["name", "type", "retention", "x"]), st.text(max_size=10)), children, max_size=4),
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[Key]]:
    work = tmp_path_factory.mktemp("property")
    home = make_home(work)
    for day in range(4):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1))
        add_model(home, "ci-model", f"c{day}", NOW - timedelta(days=30 * day + 2))
    config = example_config(home, work)
    return work, config, all_keys(config)


def test_the_key_set_covers_the_example_and_every_model_field(world: tuple[Path, dict[str, Any], list[Key]]) -> None:
    _, config, keys = world
    assert load_config_from(config, world[0] / "base.toml")  # the base itself is valid
    assert ("retention", 0, "keep_within_hourly") in keys and ("offhours", 0, "uptime") in keys
    assert ("providers", "agent", "deployments", 0, "stop_timeout_seconds") in keys
    assert len(keys) > 120


def load_config_from(config: dict[str, Any], path: Path) -> Settings:
    path.write_text(tomli_w.dumps(config))
    return load_config(str(path)).settings


def names_the_key(message: str, key: Key) -> bool:
    """True when the message names the key's path, or the table holding it (cross-field checks live there)."""
    paths = [format_key_path(key[:length]) for length in range(len(key), 0, -1)][: max(2, len(key) - 1)]
    if key[0] == "providers":  # without the provider it names, the off-hours policy is what is wrong
        paths.append("offhours[0].provider")
    # A provider's errors carry its type as a step: providers.cloud.bentocloud.timeout.
    return any(f"{path}:" in message or f"{path}." in message or f"{path}[" in message for path in paths)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_value_at_any_key_is_refused_naming_it_or_works(
    data: st.DataObject, world: tuple[Path, dict[str, Any], list[Key]]
) -> None:
    work, config, keys = world
    key = data.draw(st.sampled_from(keys), label="key")
    value = data.draw(st.one_of(toml_values, plausible), label="value")
    try:
        changed = substitute(config, key, value)
        text = tomli_w.dumps(changed)
    except (TypeError, ValueError):  # not expressible in TOML (e.g. a NUL in a key); nothing to load
        return
    path = work / "config.toml"
    path.write_text(text, encoding="utf-8")
    try:
        loaded = load_config(str(path)).settings
    except ConfigError as error:
        event("refused")
        assert str(path) in str(error), str(error)
        assert names_the_key(str(error), key), (format_key_path(key), str(error))
        return
    event("accepted")
    use_like_the_commands_do(loaded)


def use_like_the_commands_do(loaded: Settings) -> None:
    """What check-config, plan, status and the daemon do with accepted settings; none of it may raise."""
    json.dumps(loaded.model_dump(mode="json"))
    try:
        planned = make_plan(loaded, NOW)
        json.dumps(planned.plan.to_dict())
    except ConfigError:
        pass  # e.g. store.home replaced by another valid absolute path that is no BentoML home: exit 78
    # status lists every provider; BentoCloud's and Kubernetes' would retry against a closed port for seconds.
    local = {name: provider for name, provider in loaded.providers.items() if provider.type not in ("bentocloud", "kubernetes")}
    with contextlib.suppress(ConfigError):
        collect_status(loaded.model_copy(update={"providers": local}), NOW)
    disk = DiskUsage(total_bytes=10**12, used_bytes=9 * 10**11)
    samples = [DiskSample(NOW - timedelta(minutes=minutes), 9 * 10**11 - minutes * 10**6) for minutes in range(10, 0, -1)]
    for policy in loaded.disk:
        disk_target(policy, disk, 5 * 10**11, samples, NOW)
        for size in (policy.high_watermark, policy.low_watermark, policy.max_store_size, policy.max_delete_bytes_per_run):
            if size is not None:
                size.resolve(disk.total_bytes)
    for policy in loaded.disk:
        IntervalTrigger(seconds=policy.check_interval.approx_seconds(), timezone=timezone.utc).get_next_fire_time(None, NOW)
    if loaded.store.trash_retention_span is not None:
        assert NOW - loaded.store.trash_retention_span < NOW
    for retention in loaded.retention:
        if retention.schedule is not None:
            retention_trigger(retention.schedule, loaded).get_next_fire_time(None, NOW)
    for offhours in loaded.offhours:
        reconcile = timedelta(seconds=offhours.reconcile_interval.approx_seconds())
        WindowTrigger(offhours.window, reconcile).get_next_fire_time(NOW, NOW)
    for value in durations_in(loaded):
        value.before(NOW, loaded.daemon.zone)
        value.after(NOW, loaded.daemon.zone)
    for path in (loaded.store.home, loaded.daemon.state_dir, loaded.daemon.audit_log, loaded.store.archive_dir):
        assert path is None or path.is_absolute()


def durations_in(loaded: Settings) -> Iterator[Duration]:
    for section in (loaded.store, loaded.daemon, *loaded.policies, *loaded.providers.values()):
        for name in type(section).model_fields:
            value = getattr(section, name)
            if isinstance(value, Duration):
                yield value
            elif isinstance(value, Size):
                assert value.bytes != 0 and value.percent != 0, f"{name} = {value}: a zero limit was accepted"


CLI_EXAMPLES = [
    (("disk", 0, "high_watermark"), 0.85),
    (("disk", 0, "max_store_size"), 1.5),
    (("disk", 0, "max_store_size"), "0B"),
    (("retention", 0, "min_age"), 3600),
    (("store", "home"), "relative/store"),
    (("metrics", "listen_address"), "not an address"),
    (("daemon", "timezone"), "a" * 3000),
    (("offhours", 0, "downtime"), [1, {"x": date(2026, 1, 1)}]),
    (("providers", "units", "timeout_seconds"), float("inf")),
    (("retention", 0, "keep_within"), "9" * 400 + "y"),
    (("daemon", "state_dir"), time(12, 0)),
    (("store", "max_shrink"), "0%"),
]


def test_the_cli_exits_78_naming_the_key_without_a_traceback(world: tuple[Path, dict[str, Any], list[Key]], tmp_path: Path) -> None:
    _, config, _ = world
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RETENTIOND_")}
    environment["PYTHONPATH"] = str(REPO)
    started = []
    for index, (key, value) in enumerate(CLI_EXAMPLES):
        path = tmp_path / f"config-{index}.toml"
        path.write_text(tomli_w.dumps(substitute(config, key, value)))
        command = ("check-config", "plan")[index % 2]
        # All at once: each child mostly waits for its imports, so together they take the time of a few.
        child = subprocess.Popen(
            [sys.executable, "-m", "daemon", command, "--config", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, env=environment,
        )
        started.append((key, command, child))
    for key, command, child in started:
        _, stderr = child.communicate(timeout=120)
        assert child.returncode == 78, (format_key_path(key), command, stderr[-2000:])
        assert "Traceback" not in stderr
        assert f"{format_key_path(key)}:" in stderr, stderr


ENV_VALUES = ["", "0.85", "85", "1.5", "0B", "relative", "[1", '{"name": 1}', "[]", "{}", "true", "nan", "a" * 3000]
ENV_KEYS = [
    "RETENTIOND_STORE__HOME", "RETENTIOND_STORE__MAX_SHRINK", "RETENTIOND_DAEMON__TIMEZONE", "RETENTIOND_DAEMON__STATE_DIR",
    "RETENTIOND_DAEMON__AUDIT_ROTATE_SIZE", "RETENTIOND_METRICS__LISTEN_PORT", "RETENTIOND_METRICS__LISTEN_ADDRESS",
    "RETENTIOND_DISK", "RETENTIOND_RETENTION", "RETENTIOND_PROVIDERS", "RETENTIOND_PROVIDERS__CLOUD__TIMEOUT",
    "RETENTIOND_PROVIDERS__UNITS__TIMEOUT_SECONDS", "RETENTIOND_STORE", "RETENTIOND_STOR__HOME", "RETENTIOND_STORE__HOME__X",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(ENV_KEYS),
    value=st.one_of(
        st.sampled_from(ENV_VALUES),
        st.text(max_size=30).filter(lambda text: "\0" not in text),
        st.builds(lambda v: json.dumps([{"name": "d", "max_store_size": v}]), st.one_of(st.floats(), st.integers(), st.text(max_size=5))),
    ),
)
def test_any_environment_override_is_refused_naming_it_or_works(
    name: str, value: str, world: tuple[Path, dict[str, Any], list[Key]], monkeypatch: pytest.MonkeyPatch
) -> None:
    work, config, _ = world
    path = work / "env.toml"
    path.write_text(tomli_w.dumps(config))
    monkeypatch.setenv(name, value)
    try:
        loaded = load_config(str(path)).settings
    except ConfigError as error:
        section = name.removeprefix("RETENTIOND_").split("__")[0].lower()
        assert name in str(error) and (section in str(error) or "empty" in str(error)), str(error)
        return
    finally:
        monkeypatch.delenv(name)
    use_like_the_commands_do(loaded)
