"""The pure decision core of retentiond: no I/O, no clock, no logging.

``evaluate(inventory, config_policies, now)`` returns a ``Plan``.
"""

from __future__ import annotations

from policies.evaluate import evaluate
from policies.model import (
    Action,
    Artifact,
    Deployment,
    DiskReport,
    DiskSample,
    DiskUsage,
    HandStart,
    Inventory,
    Kept,
    Ownership,
    Plan,
)
from policies.spec import DiskPolicy, OffhoursPolicy, RetentionPolicy

__all__ = [
    "Action", "Artifact", "Deployment", "DiskPolicy", "DiskReport", "DiskSample", "DiskUsage", "HandStart",
    "Inventory", "Kept", "OffhoursPolicy", "Ownership", "Plan", "RetentionPolicy", "evaluate",
]
