"""Prometheus metrics: a textfile-collector file (atomic, mode 0644) and an optional 127.0.0.1 endpoint."""

from __future__ import annotations

from collections import Counter as Tally
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

from daemon.executor import RunResult
from daemon.store import write_file_atomically
from policies import DiskUsage, Inventory

log = structlog.get_logger("retentiond")


class Metrics:
    """The daemon's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.bytes_freed = Counter("retentiond_bytes_freed", "Bytes freed by deletions", ["policy"], registry=registry)
        self.actions = Counter("retentiond_actions", "Actions carried out", ["policy", "outcome"], registry=registry)
        self.last_run = Gauge(
            "retentiond_last_run_timestamp_seconds", "When a policy last ran", ["policy"], registry=registry
        )
        self.last_success = Gauge(
            "retentiond_last_run_success", "1 if the last run of a policy had no failed action", ["policy"], registry=registry
        )
        self.store_bytes = Gauge("retentiond_store_bytes", "Bytes in the store", ["kind"], registry=registry)
        self.store_versions = Gauge("retentiond_store_versions", "Versions in the store", ["kind"], registry=registry)
        self.disk_used = Gauge("retentiond_disk_used_ratio", "Used share of the store's filesystem", registry=registry)
        self.blocked = Gauge(
            "retentiond_eviction_blocked_bytes", "Bytes a disk policy could not evict (protected)", ["policy"],
            registry=registry,
        )
        self._server: WSGIServer | None = None

    def observe_run(self, result: RunResult, policies: list[str]) -> None:
        """Count a run's outcomes and refresh the store gauges from its inventory."""
        for action_result in result.results:
            self.actions.labels(action_result.action.policy, action_result.outcome).inc()
            if action_result.outcome == "ok":
                self.bytes_freed.labels(action_result.action.policy).inc(action_result.bytes_freed)
        for policy in policies:
            self.last_run.labels(policy).set(result.plan.at.timestamp())
            self.last_success.labels(policy).set(0 if result.failed else 1)
        for report in result.plan.disk_reports:
            self.blocked.labels(report.policy).set(0 if report.reached else report.blocked_bytes)
        if result.inventory.artifacts:
            self.observe_store(result.inventory, freed=result)

    def observe_store(self, inventory: Inventory, freed: RunResult | None = None) -> None:
        gone = {(r.action.kind, r.action.name, r.action.version) for r in freed.results if r.outcome == "ok"} if freed else set()
        sizes: Tally[str] = Tally()
        counts: Tally[str] = Tally()
        for artifact in inventory.artifacts:
            if (artifact.kind, artifact.name, artifact.version) in gone:
                continue
            sizes[artifact.kind] += artifact.size_bytes
            counts[artifact.kind] += 1
        for kind in ("model", "bento"):
            self.store_bytes.labels(kind).set(sizes[kind])
            self.store_versions.labels(kind).set(counts[kind])
        if inventory.disk is not None:
            self.observe_disk(inventory.disk)

    def observe_disk(self, disk: DiskUsage) -> None:
        self.disk_used.set(disk.used_ratio)

    def write_textfile(self, path: Path | None) -> None:
        """Write the metrics for node_exporter's textfile collector (atomic replace, mode 0644)."""
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomically(path, generate_latest(self.registry))
        except OSError as error:
            log.warning("metrics.write_failed", path=str(path), error=error.strerror or str(error))

    def serve(self, address: str, port: int) -> None:
        """Serve ``/metrics`` over HTTP on ``address:port`` in a background thread."""
        self._server, _ = start_http_server(port, addr=address, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
