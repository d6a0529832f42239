"""The metric families retentiond writes, rendered from one Snapshot (daemon/metrics.py makes it);
the textfile's text and the HTTP endpoint.

Every family is yielded even before it has a sample, so the names here are all the names
retentiond writes: the shipped alert rules and dashboard are checked against them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.metric_snapshot import KINDS, Snapshot


class _Live(Collector):
    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        return families(self._source())


def render(snapshot: Snapshot) -> bytes:
    """Return the text exposition of one snapshot (the textfile's content)."""
    registry = CollectorRegistry()
    registry.register(_Live(lambda: snapshot))
    return generate_latest(registry)


def serve(source: Callable[[], Snapshot], address: str, port: int) -> WSGIServer:
    """Serve ``/metrics`` on ``address:port`` in a background thread, from a fresh ``source()`` at each scrape."""
    registry = CollectorRegistry()
    registry.register(_Live(source))
    server, _ = start_http_server(port, addr=address, registry=registry)
    return server


def families(snapshot: Snapshot) -> Iterator[Metric]:
    """Yield every metric family retentiond writes (each one, even when it has no sample yet)."""
    state = snapshot.state
    policies: dict[str, dict[str, Any]] = state.get("policies", {})
    per_policy: list[tuple[str, CounterMetricFamily | GaugeMetricFamily]] = [
        ("bytes_freed", CounterMetricFamily("retentiond_bytes_freed", "Bytes freed by deletions", labels=["policy"])),
        ("last_run_at", GaugeMetricFamily("retentiond_last_run_timestamp_seconds", "When a policy last ran", labels=["policy"])),
        ("last_success", GaugeMetricFamily(
            "retentiond_last_run_success", "1 if the last run of a policy had no failed or refused action", labels=["policy"])),
        ("last_success_at", GaugeMetricFamily(
            "retentiond_last_success_timestamp_seconds", "When a run of a policy last succeeded", labels=["policy"])),
        ("last_duration_s", GaugeMetricFamily(
            "retentiond_last_run_duration_seconds", "How long the last run of a policy took", labels=["policy"])),
        ("last_failed_actions", GaugeMetricFamily(
            "retentiond_last_run_failed_actions", "Actions of a policy that failed in its last run", labels=["policy"])),
    ]
    actions = CounterMetricFamily(
        "retentiond_actions", "Actions carried out, by policy, action and outcome", labels=["policy", "action", "outcome"]
    )
    runs = CounterMetricFamily(
        "retentiond_runs", "Runs by policy and outcome (ok, failed, interrupted, error)", labels=["policy", "outcome"]
    )
    for policy, entry in sorted(policies.items()):
        for key, family in per_policy:
            if entry.get(key) is not None:
                family.add_metric([policy], float(entry[key]))
        for key, count in sorted(entry.get("actions", {}).items()):
            action, _, outcome = key.partition("/")
            actions.add_metric([policy, action, outcome], float(count))
        for outcome, count in sorted(entry.get("runs", {}).items()):
            runs.add_metric([policy, outcome], float(count))
    yield from (family for _, family in per_policy)
    yield actions
    yield runs
    interval = GaugeMetricFamily(
        "retentiond_policy_interval_seconds", "How often a scheduled policy is expected to run", labels=["policy"]
    )
    for policy, seconds in sorted(snapshot.intervals.items()):
        interval.add_metric([policy], seconds)
    yield interval
    yield from _store_families(snapshot)
    yield from _offhours_families(snapshot)
    audit = GaugeMetricFamily(
        "retentiond_audit_chain_intact", "1 if the audit log's tail was intact when the last run opened it, 0 if not"
    )
    if state.get("audit_intact") is not None:
        audit.add_metric([], float(state["audit_intact"]))
    yield audit
    yield GaugeMetricFamily(
        "retentiond_metrics_written_timestamp_seconds", "When these metrics were rendered", value=snapshot.written_at
    )
    stale = GaugeMetricFamily(
        "retentiond_metrics_stale_after_seconds", "After this long without a rewrite, the textfile is stale"
    )
    if snapshot.stale_after is not None:
        stale.add_metric([], snapshot.stale_after)
    yield stale


def _store_families(snapshot: Snapshot) -> Iterator[Metric]:
    store = snapshot.state.get("store") or {}
    size = GaugeMetricFamily("retentiond_store_bytes", "Bytes in the store, as the last scan saw it", labels=["kind"])
    versions = GaugeMetricFamily("retentiond_store_versions", "Versions in the store, as the last scan saw it", labels=["kind"])
    for kind in KINDS:
        if kind in store.get("bytes", {}):
            size.add_metric([kind], float(store["bytes"][kind]))
            versions.add_metric([kind], float(store["versions"].get(kind, 0)))
    yield size
    yield versions
    in_use = GaugeMetricFamily(
        "retentiond_versions_in_use", "Versions a running process held when the last run decided (never deleted)"
    )
    if snapshot.state.get("in_use") is not None:
        in_use.add_metric([], float(snapshot.state["in_use"]))
    yield in_use
    used = GaugeMetricFamily("retentiond_disk_used_ratio", "Used share of the store's filesystem")
    if snapshot.disk_used_ratio is not None:
        used.add_metric([], snapshot.disk_used_ratio)
    yield used
    names = (
        ("retentiond_disk_high_watermark_ratio", "A disk policy's high_watermark as a share of the filesystem"),
        ("retentiond_disk_low_watermark_ratio", "A disk policy's low_watermark as a share of the filesystem"),
        ("retentiond_store_budget_bytes", "A disk policy's max_store_size"),
    )
    for index, (name, text) in enumerate(names):
        family = GaugeMetricFamily(name, text, labels=["policy"])
        for policy, values in sorted(snapshot.watermarks.items()):
            if values[index] is not None:
                family.add_metric([policy], float(values[index]))  # type: ignore[arg-type]
        yield family
    blocked = GaugeMetricFamily(
        "retentiond_eviction_blocked_bytes", "Bytes a disk policy needed to free but could not (protected)", labels=["policy"]
    )
    for policy, value in sorted((snapshot.state.get("blocked") or {}).items()):
        blocked.add_metric([policy], float(value))
    yield blocked


def _offhours_families(snapshot: Snapshot) -> Iterator[Metric]:
    hours = CounterMetricFamily(
        "retentiond_deployment_hours_saved", "Hours deployments were down because an off-hours policy terminated them",
        labels=["policy"],
    )
    cost = CounterMetricFamily(
        "retentiond_cost_saved", "Money saved: deployment-hours times the policy's hourly_cost", labels=["policy"]
    )
    down = GaugeMetricFamily(
        "retentiond_deployments_terminated", "Deployments an off-hours policy terminated that are still down", labels=["policy"]
    )
    for policy, entry in sorted(snapshot.savings.items()):
        hours.add_metric([policy], entry.deployment_hours)
        down.add_metric([policy], float(entry.down))
        if entry.cost is not None:
            cost.add_metric([policy], entry.cost)
    restarts = GaugeMetricFamily(
        "retentiond_deployments_restart_overdue",
        "Deployments an off-hours policy terminated that are still down after their window ended", labels=["policy"],
    )
    for policy, count in sorted(snapshot.overdue.restarts.items()):
        restarts.add_metric([policy], float(count))
    deletions = GaugeMetricFamily(
        "retentiond_deployment_deletions_overdue", "Deployments inactive for longer than delete_after that still exist",
        labels=["policy"],
    )
    for policy, count in sorted(snapshot.overdue.deletions.items()):
        deletions.add_metric([policy], float(count))
    yield from (hours, cost, down, restarts, deletions)
