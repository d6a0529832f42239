"""What running processes and recent reads say about the store, added to its inventory before deciding."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from daemon.inuse import find_holders
from daemon.reads import refresh_read_times
from policies.model import Inventory
from policies.spec import ArtifactPolicy, ConfigPolicy


def observe_usage(inventory: Inventory, home: Path, policies: Sequence[ConfigPolicy]) -> Inventory:
    """Given the scanned store at ``home`` (resolved) and the policies, return the inventory with the versions
    running processes hold (``in_use``), fresh read times where ``keep_used_within`` needs them, and the
    warnings of both. Nothing is read when no policy could delete a version.
    """
    if not inventory.artifacts or not any(isinstance(policy, ArtifactPolicy) for policy in policies):
        return inventory
    holders, warnings = find_holders(inventory, home)
    inventory = dataclasses.replace(inventory, in_use=holders, warnings=(*inventory.warnings, *warnings))
    return refresh_read_times(inventory, home, policies)
