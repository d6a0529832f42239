"""retentiond's own state in ``daemon.state_dir``: the last run of each policy, for ``status``.

Written atomically after each run. Losing it loses history, never safety, so a state
directory that cannot be written is logged and the run goes on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import structlog

from daemon.executor import RunResult
from daemon.run_figures import policy_figures, policy_outcome
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

    def record_run(self, result: RunResult, policies: list[str], store_home: str) -> None:
        """Remember the run as the last one of each of its policies, with that policy's own figures (best effort)."""
        state = self.load()
        runs = state.setdefault("runs", {})
        for policy, figures in policy_figures(result, policies).items():
            runs[policy] = {
                "at": format_instant(result.plan.at), "run_id": result.run_id,
                "outcome": policy_outcome(result, figures), **figures.to_dict(),
            }
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            write_file_atomically(self.path, json.dumps(state, indent=1).encode())
        except OSError as error:
            log.warning("state.write_failed", path=str(self.path), error=error.strerror or str(error))
