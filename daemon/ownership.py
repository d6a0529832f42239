"""Durable ownership records: which deployments this daemon (or a person through it) terminated.

``<state_dir>/ownership.json`` outlives restarts and config changes. It also remembers
when each deployment was first seen terminated or failed (for ``delete_after``). It is
only written under the store lock, atomically (temp file, fsync, ``os.replace``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.store import write_file_atomically
from policies.model import Deployment, Ownership
from policies.offhours import INACTIVE, RUNNING

Key = tuple[str, str]


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class OwnershipState:
    records: dict[Key, Ownership] = field(default_factory=dict)
    inactive_since: dict[Key, datetime] = field(default_factory=dict)

    def annotate(self, deployments: Iterable[Deployment]) -> list[Deployment]:
        """Return the deployments with ``inactive_since`` filled in from what we saw before."""
        return [replace(d, inactive_since=self.inactive_since.get((d.provider, d.name))) for d in deployments]

    def observe(self, deployments: Sequence[Deployment], listed_providers: Iterable[str], now: datetime) -> list[str]:
        """Update from a fresh listing; drop records that no longer apply. Return why each was dropped."""
        listed = set(listed_providers)
        current = {(d.provider, d.name): d for d in deployments}
        dropped = []
        for key, record in list(self.records.items()):
            if key[0] not in listed:
                continue  # that provider could not be listed this time: know nothing, change nothing
            deployment = current.get(key)
            reason = _stale(record, deployment)
            if reason:
                del self.records[key]
                dropped.append(f"{key[0]}/{key[1]}: {reason}")
        for key, deployment in current.items():
            if deployment.status in INACTIVE:
                self.inactive_since.setdefault(key, now)
            else:
                self.inactive_since.pop(key, None)
        for key in [key for key in self.inactive_since if key[0] in listed and key not in current]:
            del self.inactive_since[key]
        return dropped


def _stale(record: Ownership, deployment: Deployment | None) -> str | None:
    if deployment is None:
        return "deleted by someone else"
    if record.identity and deployment.identity and record.identity != deployment.identity:
        return "replaced by a new deployment of the same name"
    if record.manual and deployment.status in RUNNING:
        return "started again by someone; the manual stop no longer applies"
    return None


class OwnershipFile:
    """``<state_dir>/ownership.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "ownership.json"

    def load(self) -> OwnershipState:
        """Return the stored state; a missing file is an empty state. Raise ValueError if it is corrupt."""
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return OwnershipState()
        state = OwnershipState()
        for raw in data.get("records", []):
            record = Ownership(
                provider=raw["provider"], name=raw["name"], policy=raw["policy"],
                terminated_at=datetime.fromisoformat(raw["terminated_at"]),
                window_ends_at=_instant(raw.get("window_ends_at")), identity=raw.get("identity", ""),
                manual=bool(raw.get("manual", False)),
            )
            state.records[(record.provider, record.name)] = record
        for key, since in data.get("inactive_since", {}).items():
            provider, name = key.split("/", 1)
            state.inactive_since[(provider, name)] = datetime.fromisoformat(since)
        return state

    def save(self, state: OwnershipState) -> None:
        """Write the state atomically. Raise OSError if it cannot be written."""
        data = {
            "records": [
                {
                    "provider": r.provider, "name": r.name, "policy": r.policy,
                    "terminated_at": r.terminated_at.isoformat(),
                    "window_ends_at": r.window_ends_at.isoformat() if r.window_ends_at else None,
                    "identity": r.identity, "manual": r.manual,
                }
                for r in sorted(state.records.values(), key=lambda r: (r.provider, r.name))
            ],
            "inactive_since": {f"{p}/{n}": t.isoformat() for (p, n), t in sorted(state.inactive_since.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        write_file_atomically(self.path, json.dumps(data, indent=1).encode())
