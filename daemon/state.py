"""retentiond's own state in ``daemon.state_dir``: the last run of each policy, for ``status``.

Written atomically after each run. Losing it loses history, never safety, so a state
directory that cannot be written is logged and the run goes on.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from daemon.executor import RunResult
from daemon.purge import StuckEntry
from daemon.store import write_file_atomically
from policies.model import format_instant

log = structlog.get_logger("retentiond")


class StateFile:
    """``<state_dir>/state.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.json"

    def load(self) -> dict[str, Any]:
        """Return the stored state, or an empty one if there is none or it is unreadable."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"runs": {}, "disk": {}}
        return data if isinstance(data, dict) else {"runs": {}, "disk": {}}

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
            "stuck": [{"path": str(entry.path), "error": entry.error, "size_bytes": entry.size_bytes} for entry in stuck],
        }
        self._write(state)

    def record_run(self, result: RunResult, policies: list[str], store_home: str) -> None:
        """Remember the run as the last one of each of its policies (best effort)."""
        state = self.load()
        outcome = "interrupted" if result.interrupted else ("failed" if result.failed else "ok")
        entry = {"at": format_instant(result.plan.at), "run_id": result.run_id, "outcome": outcome, **result.counters()}
        runs = state.setdefault("runs", {})
        for policy in policies:
            runs[policy] = entry
        if result.inventory.artifacts:
            gone = {(r.action.kind, r.action.name, r.action.version) for r in result.results if r.outcome == "ok"}
            remaining = [a for a in result.inventory.artifacts if (a.kind, a.name, a.version) not in gone]
            state["store"] = {
                "home": store_home, "at": format_instant(result.plan.at),
                "versions": len(remaining), "size_bytes": sum(a.size_bytes for a in remaining),
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
