"""The pure decision core of retentiond: no I/O, no clock, no logging.

``evaluate(inventory, config_policies, now)`` returns a ``Plan``.
"""

from __future__ import annotations

from policies.evaluate import evaluate
from policies.model import Action, Artifact, DiskReport, DiskSample, DiskUsage, Inventory, Kept, Plan
from policies.spec import DiskPolicy, RetentionPolicy

__all__ = [
    "Action", "Artifact", "DiskPolicy", "DiskReport", "DiskSample", "DiskUsage",
    "Inventory", "Kept", "Plan", "RetentionPolicy", "evaluate",
]
