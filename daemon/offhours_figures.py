"""What off-hours saved and what it owes: deployment-hours down, money saved, overdue restarts and deletions.

Savings come from the ownership records (daemon/ownership.py): a deployment that an off-hours
policy terminated is down from ``terminated_at`` until its record goes (restarted, started by
someone, deleted). ``<state_dir>/savings.json`` keeps the closed intervals per policy and the
open ones; a deployment still down accrues up to now. An interval that ended between two looks
is closed at the later look, so totals are late by at most one reconcile (``reconcile_interval``,
or the daemon's metrics refresh). Terminations by hand (``deployments terminate``) save nothing
here: nobody said they would ever run again. Money is hours times the policy's ``hourly_cost``;
an interval is priced at the cost in force when it ends (a running one at today's cost).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from daemon.files import write_file_atomically
from policies.model import Deployment, Ownership
from policies.offhours import deciding_policy
from policies.spec import OffhoursPolicy

Key = tuple[str, str]


@dataclass
class OpenInterval:
    policy: str
    since: datetime


@dataclass
class SavingsLedger:
    closed_seconds: dict[str, float] = field(default_factory=dict)
    closed_cost: dict[str, float] = field(default_factory=dict)
    open: dict[Key, OpenInterval] = field(default_factory=dict)

    def reconcile(self, records: Iterable[Ownership], now: datetime, costs: Mapping[str, float | None]) -> bool:
        """Close the intervals whose record is gone, open one per new record. Return True if anything changed."""
        current = {(r.provider, r.name): r for r in records if not r.manual}
        changed = False
        for key, interval in list(self.open.items()):
            record = current.get(key)
            if record is not None and record.policy == interval.policy and record.terminated_at == interval.since:
                continue
            # Terminated again since: it was up in between, at the latest until the new stop.
            ended = min(now, record.terminated_at) if record is not None else now
            self._close(interval, ended, costs)
            del self.open[key]
            changed = True
        for key, record in current.items():
            if key not in self.open:
                self.open[key] = OpenInterval(record.policy, record.terminated_at)
                changed = True
        return changed

    def _close(self, interval: OpenInterval, ended: datetime, costs: Mapping[str, float | None]) -> None:
        seconds = max(0.0, (ended - interval.since).total_seconds())
        self.closed_seconds[interval.policy] = self.closed_seconds.get(interval.policy, 0.0) + seconds
        cost = costs.get(interval.policy)
        if cost is not None:
            self.closed_cost[interval.policy] = self.closed_cost.get(interval.policy, 0.0) + seconds / 3600 * cost

    def totals(self, now: datetime, costs: Mapping[str, float | None]) -> dict[str, PolicySavings]:
        """Given the instant and each policy's hourly cost, return per policy: hours saved, money saved, deployments down."""
        policies = {*self.closed_seconds, *(interval.policy for interval in self.open.values()), *costs}
        result = {
            policy: PolicySavings(self.closed_seconds.get(policy, 0.0) / 3600, self.closed_cost.get(policy, 0.0), 0)
            for policy in policies
        }
        for interval in self.open.values():
            entry = result[interval.policy]
            hours = max(0.0, (now - interval.since).total_seconds()) / 3600
            entry.deployment_hours += hours
            entry.down += 1
            cost = costs.get(interval.policy)
            if cost is not None:
                entry.cost = (entry.cost or 0.0) + hours * cost
        for policy, entry in result.items():
            if costs.get(policy) is None and policy not in self.closed_cost:
                entry.cost = None
        return result


@dataclass
class PolicySavings:
    deployment_hours: float
    cost: float | None
    down: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment_hours_saved": round(self.deployment_hours, 3),
            "cost_saved": round(self.cost, 2) if self.cost is not None else None,
            "deployments_down": self.down,
        }


def hourly_costs(policies: Sequence[OffhoursPolicy]) -> dict[str, float | None]:
    return {policy.name: policy.hourly_cost for policy in policies}


class SavingsFile:
    """``<state_dir>/savings.json``: closed totals per policy and the intervals still open."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "savings.json"

    def load(self) -> SavingsLedger:
        """Return the stored ledger; a missing or unreadable file is an empty one (savings are history, not safety)."""
        try:
            data = json.loads(self.path.read_text())
            ledger = SavingsLedger(
                closed_seconds={str(k): float(v) for k, v in data.get("closed_seconds", {}).items()},
                closed_cost={str(k): float(v) for k, v in data.get("closed_cost", {}).items()},
            )
            for raw in data.get("open", []):
                ledger.open[(raw["provider"], raw["name"])] = OpenInterval(raw["policy"], datetime.fromisoformat(raw["since"]))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return SavingsLedger()
        return ledger

    def save(self, ledger: SavingsLedger) -> None:
        """Write the ledger atomically. Raise OSError if it cannot be written."""
        data = {
            "closed_seconds": ledger.closed_seconds,
            "closed_cost": ledger.closed_cost,
            "open": [
                {"provider": provider, "name": name, "policy": interval.policy, "since": interval.since.isoformat()}
                for (provider, name), interval in sorted(ledger.open.items())
            ],
        }
        write_file_atomically(self.path, json.dumps(data, indent=1).encode())


@dataclass(frozen=True)
class Overdue:
    """Per off-hours policy: deployments it terminated that are still down after their window ended,
    and deployments past ``delete_after`` that are still there."""

    restarts: dict[str, int]
    deletions: dict[str, int]


def overdue(
    records: Iterable[Ownership], inactive_since: Mapping[Key, datetime], policies: Sequence[OffhoursPolicy], now: datetime
) -> Overdue:
    """Given the ownership records, when each deployment was first seen inactive, the policies and the instant, count what is overdue."""
    restarts = {policy.name: 0 for policy in policies}
    deletions = {policy.name: 0 for policy in policies}
    for record in records:
        if not record.manual and record.policy in restarts and record.window_ends_at is not None and record.window_ends_at < now:
            restarts[record.policy] += 1
    for (provider, name), since in inactive_since.items():
        # As policies/offhours.py decides a deletion: by the first policy that selects it (exclusions do not apply).
        policy = deciding_policy(policies, Deployment(provider, name, "terminated"))
        if policy is None or policy.delete_after is None:
            continue
        if policy.delete_after.after(since, timezone.utc) < now:
            deletions[policy.name] += 1
    return Overdue(restarts, deletions)
