"""What one rendering of the metrics shows, as plain values: built by daemon/metrics.py, turned into
metric families by daemon/metric_families.py (which imports prometheus_client, so only when rendering)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from daemon.offhours_figures import Overdue, PolicySavings

KINDS = ("model", "bento")


@dataclass
class Snapshot:
    """Everything one rendering shows (daemon/metric_families.py turns it into metric families)."""

    state: dict[str, Any]
    savings: dict[str, PolicySavings] = field(default_factory=dict)
    overdue: Overdue = field(default_factory=lambda: Overdue({}, {}))
    intervals: dict[str, float] = field(default_factory=dict)
    watermarks: dict[str, tuple[float | None, float | None, float | None]] = field(default_factory=dict)
    disk_used_ratio: float | None = None
    written_at: float = 0.0
    stale_after: float | None = None
