"""Durable ownership records: which deployments this daemon (or a person through it) terminated.

``<state_dir>/ownership.json`` outlives restarts and config changes. It also remembers
which deployments a person started through ``deployments restart`` during downtime
(``started_by_hand``; files written before it existed simply have none) and when each
deployment was first seen terminated or failed (for ``delete_after``). It is only
written under the store lock, atomically (temp file, fsync, ``os.replace``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError
from daemon.files import write_file_atomically
from policies.model import Deployment, HandStart, Ownership
from policies.offhours import INACTIVE, RUNNING, deciding_policy, hand_start_holds, same_deployment, stop_window_open
from policies.spec import OffhoursPolicy

Key = tuple[str, str]


def _instant(raw: Any, key: str) -> datetime:
    """Given a stored instant, return it. Raise ValueError unless it is ISO 8601 with an offset."""
    if not isinstance(raw, str):
        raise ValueError(f"{key} {raw!r} is not an ISO 8601 instant")
    instant = datetime.fromisoformat(raw)
    if instant.tzinfo is None:
        raise ValueError(f"{key} {raw!r} has no timezone")
    return instant


def _text(raw: dict[str, Any], key: str, default: str | None = None) -> str:
    value = raw.get(key, default) if default is not None else raw[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} {value!r} is not a string")
    return value


def _parse_state(data: Any) -> OwnershipState:
    """Given the parsed JSON of ownership.json, return the state. Raise ValueError, KeyError, TypeError or
    AttributeError if it is not what ``OwnershipFile.save`` writes."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    state = OwnershipState()
    for raw in data.get("records", []):
        window_ends_at = raw.get("window_ends_at")
        manual = raw.get("manual", False)
        if not isinstance(manual, bool):
            raise ValueError(f"manual {manual!r} is not true or false")
        record = Ownership(
            provider=_text(raw, "provider"), name=_text(raw, "name"), policy=_text(raw, "policy"),
            terminated_at=_instant(raw["terminated_at"], "terminated_at"),
            window_ends_at=_instant(window_ends_at, "window_ends_at") if window_ends_at is not None else None,
            identity=_text(raw, "identity", ""), manual=manual,
        )
        state.records[(record.provider, record.name)] = record
    for raw in data.get("started_by_hand", []):
        hand_start = HandStart(
            provider=_text(raw, "provider"), name=_text(raw, "name"), started_at=_instant(raw["started_at"], "started_at"),
            identity=_text(raw, "identity", ""),
        )
        state.hand_starts[(hand_start.provider, hand_start.name)] = hand_start
    for key, since in data.get("inactive_since", {}).items():
        provider, separator, name = key.partition("/")
        if not separator:
            raise ValueError(f"inactive_since key {key!r} is not PROVIDER/NAME")
        state.inactive_since[(provider, name)] = _instant(since, f"inactive_since of {key}")
    return state


@dataclass
class OwnershipState:
    records: dict[Key, Ownership] = field(default_factory=dict)
    hand_starts: dict[Key, HandStart] = field(default_factory=dict)
    inactive_since: dict[Key, datetime] = field(default_factory=dict)

    def annotate(self, deployments: Iterable[Deployment]) -> list[Deployment]:
        """Return the deployments with ``inactive_since`` filled in from what we saw before."""
        return [replace(d, inactive_since=self.inactive_since.get((d.provider, d.name))) for d in deployments]

    def forget(self, key: Key) -> None:
        """Drop every record of one deployment but when it was first seen inactive."""
        self.records.pop(key, None)
        self.hand_starts.pop(key, None)

    def observe(
        self,
        deployments: Sequence[Deployment],
        listed_providers: Iterable[str],
        now: datetime,
        policies: Sequence[OffhoursPolicy] = (),
    ) -> list[str]:
        """Update from a fresh listing; drop records that no longer apply. Return why each was dropped.

        ``policies`` (in config order) tell whether a start by hand still holds at ``now``.
        """
        listed = set(listed_providers)
        current = {(d.provider, d.name): d for d in deployments}
        dropped = []
        # A provider that could not be listed this time: know nothing, change nothing.
        for key in sorted(key for key in {*self.records, *self.hand_starts} if key[0] in listed):
            deployment = current.get(key)
            record, hand_start = self.records.get(key), self.hand_starts.get(key)
            reason = None if record is None else _stale(record, deployment, policies, now)
            if reason:
                del self.records[key]
                dropped.append(f"{key[0]}/{key[1]}: {reason}")
            reason = None if hand_start is None else _stale_hand_start(hand_start, deployment, policies, now)
            if reason:
                del self.hand_starts[key]
                dropped.append(f"{key[0]}/{key[1]}: started by hand: {reason}")
        for key, deployment in current.items():
            if deployment.status in INACTIVE:
                self.inactive_since.setdefault(key, now)
            else:
                self.inactive_since.pop(key, None)
        for key in [key for key in self.inactive_since if key[0] in listed and key not in current]:
            del self.inactive_since[key]
        return dropped


def _gone(identity: str, deployment: Deployment | None) -> str | None:
    if deployment is None:
        return "deleted by someone else"
    if not same_deployment(identity, deployment.identity):
        return "replaced by a new deployment of the same name"
    return None


def _stale(record: Ownership, deployment: Deployment | None, policies: Sequence[OffhoursPolicy], now: datetime) -> str | None:
    gone = _gone(record.identity, deployment)
    if gone or deployment is None or deployment.status not in RUNNING:
        return gone
    # It runs again: someone started it. While the window of the stop is on, the record is what
    # tells off-hours to leave it up; after that it would only undo a later stop by someone else.
    if stop_window_open(deciding_policy(policies, deployment), record, now):
        return None
    if record.manual:
        return "started again by someone; the manual stop no longer applies"
    return "started again by someone and its downtime window has ended; the stop by retentiond no longer applies"


def _stale_hand_start(
    hand_start: HandStart, deployment: Deployment | None, policies: Sequence[OffhoursPolicy], now: datetime
) -> str | None:
    gone = _gone(hand_start.identity, deployment)
    if gone or deployment is None:
        return gone
    policy = deciding_policy(policies, deployment)
    if policy is not None and not hand_start_holds(policy, hand_start.started_at, now):
        return "the downtime window it was started by hand in has ended"
    return None


class OwnershipFile:
    """``<state_dir>/ownership.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "ownership.json"

    def load(self) -> OwnershipState:
        """Return the stored state; a missing file is an empty state.

        Raise ConfigError naming the file if it cannot be read or is not what ``save`` writes: every
        command that needs the records (plan, apply, deployments) then exits 78 with the same message.
        """
        try:
            data = json.loads(self.path.read_bytes())
            return _parse_state(data)
        except FileNotFoundError:
            return OwnershipState()
        except OSError as error:
            raise ConfigError(f"ownership records {self.path} are unreadable: {error.strerror or error}") from None
        except KeyError as error:
            raise ConfigError(f"ownership records {self.path} are unreadable: an entry has no {error}") from None
        except (ValueError, TypeError, AttributeError) as error:
            raise ConfigError(f"ownership records {self.path} are unreadable: {error}") from None

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
            "started_by_hand": [
                {"provider": h.provider, "name": h.name, "started_at": h.started_at.isoformat(), "identity": h.identity}
                for h in sorted(state.hand_starts.values(), key=lambda h: (h.provider, h.name))
            ],
            "inactive_since": {f"{p}/{n}": t.isoformat() for (p, n), t in sorted(state.inactive_since.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        write_file_atomically(self.path, json.dumps(data, indent=1).encode())
