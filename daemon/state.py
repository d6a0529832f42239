"""retentiond's own state in ``daemon.state_dir``: the last run of each policy, for ``status``.

Written atomically after each run. Without ``store.max_shrink`` it is history only, so a state
directory that cannot be written is logged and the run goes on. With it, the last run's store size
is what the limit compares with: the directory must be writable before a run starts
(``require_writable_state_dir``, exit 78), and a state file that cannot be read refuses the run.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from daemon.config import Settings
from daemon.errors import ConfigError
from daemon.executor import RunResult
from daemon.files import write_file_atomically
from daemon.purge import StuckEntry
from daemon.run_figures import policy_figures, policy_outcome
from policies.model import format_instant

log = structlog.get_logger("retentiond")


class StateFile:
    """``<state_dir>/state.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.json"

    def load(self) -> dict[str, Any]:
        """Return the stored state, or an empty one if there is none or it is unreadable."""
        try:
            return self.read()
        except (OSError, ValueError):
            return {"runs": {}, "disk": {}}

    def read(self) -> dict[str, Any]:
        """Return the stored state, or an empty one if there is none. Raise OSError or ValueError saying
        why it cannot be read (for a safety limit that must not pass just because its data is gone)."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"runs": {}, "disk": {}}
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
        return data

    def last_store_versions(self, home: str) -> int | None:
        """Return how many versions the last run saw in the store at ``home``, None if none was recorded.

        Raise OSError or ValueError if the state file cannot be read or its store entry is malformed.
        """
        store = self.read().get("store")
        if store is None:
            return None
        if not isinstance(store, dict) or not isinstance(store.get("versions"), int):
            raise ValueError("its store entry is malformed")
        return store["versions"] if store.get("home") == home else None

    def stuck_trash(self) -> list[Path]:
        """Return the trash entries the last run could not purge (none if the state says nothing usable)."""
        trash = self.load().get("trash")
        stuck = trash.get("stuck") if isinstance(trash, dict) else None
        if not isinstance(stuck, list):
            return []
        return [Path(entry["path"]) for entry in stuck if isinstance(entry, dict) and isinstance(entry.get("path"), str)]

    def record_trash(self, stuck: list[StuckEntry], at: datetime) -> None:
        """Remember the trash entries a run could not purge, for the next run and for ``status`` (best effort)."""
        state = self.load()
        if not stuck and not (state.get("trash") or {}).get("stuck"):
            return  # nothing was stuck and nothing is: no write at all
        state["trash"] = {
            "at": format_instant(at),
            "stuck": [{"path": str(entry.path), "error": entry.error, "size_bytes": entry.size_bytes, "disk_bytes": entry.disk_bytes}
                      for entry in stuck],
        }
        self._write(state)

    def record_run(self, result: RunResult, policies: list[str], store_home: str) -> None:
        """Remember the run as the last one of each of its policies, with that policy's own figures (best effort)."""
        state = self.load()
        runs = state.setdefault("runs", {})
        during = {"interrupted_during": result.interrupted_during} if result.interrupted else {}
        for policy, figures in policy_figures(result, policies).items():
            runs[policy] = {
                "at": format_instant(result.plan.at), "run_id": result.run_id,
                "outcome": policy_outcome(result, figures), **during, **figures.to_dict(),
            }
        # A run whose deletions a store-wide limit refused (max_shrink) leaves the last good count as it is:
        # recording the shrunken store would let the next run pass the limit without anyone accepting it.
        refused_store = any(refusal.policy is None for refusal in result.plan.refusals)
        if result.inventory.artifacts and not refused_store:
            gone = {(r.action.kind, r.action.name, r.action.version) for r in result.results if r.outcome == "ok"}
            remaining = [a for a in result.inventory.artifacts if (a.kind, a.name, a.version) not in gone]
            state["store"] = {
                "home": store_home, "at": format_instant(result.plan.at),
                "versions": len(remaining), "size_bytes": sum(a.size_bytes for a in remaining),
                "disk_bytes": sum(a.usage_bytes for a in remaining),
            }
        disk = state.setdefault("disk", {})
        for report in result.plan.disk_reports:
            disk[report.policy] = {
                "at": format_instant(result.plan.at),
                "triggers": list(report.triggers),
                "needed_bytes": report.needed_bytes,
                "planned_bytes": report.planned_bytes,
                "blocked_by": report.blocked_by,
                "reached": report.reached,
            }
        self._write(state)

    def _write(self, state: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            write_file_atomically(self.path, json.dumps(state, indent=1).encode())
        except OSError as error:
            log.warning("state.write_failed", path=str(self.path), error=error.strerror or str(error))


def require_writable_state_dir(settings: Settings) -> None:
    """With ``store.max_shrink`` set, create ``daemon.state_dir`` if needed and make sure this process can write in it.

    The limit compares each run with the store size the last run recorded there, so a state directory that
    cannot be written would turn it off without a word. Raise ConfigError naming ``daemon.state_dir`` if so.
    """
    if settings.store.max_shrink is None:
        return
    state_dir = settings.daemon.state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        with tempfile.TemporaryFile(dir=state_dir):
            pass
    except OSError as error:
        raise ConfigError(
            f"daemon.state_dir {state_dir} cannot be written: {error.strerror or error}; store.max_shrink needs the "
            "store size that each run records there. Nothing was deleted: make it writable or set daemon.state_dir"
        ) from None
