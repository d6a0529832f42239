"""A run's figures per policy: each policy gets the outcomes of its own actions, never the run's totals.

Used by the state file (``status``), the ``run.finished`` audit record, the metrics and the
notification of a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from daemon.executor import ActionResult, RunResult


@dataclass
class PolicyFigures:
    """One policy's share of a run."""

    actions_planned: int = 0
    actions_ok: int = 0
    actions_failed: int = 0
    actions_skipped: int = 0
    bytes_freed: int = 0
    kept: int = 0
    refusals: int = 0

    @property
    def failed(self) -> bool:
        """True when one of the policy's actions failed or a safety limit refused its deletions."""
        return self.actions_failed > 0 or self.refusals > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def policy_figures(result: RunResult, policies: Iterable[str]) -> dict[str, PolicyFigures]:
    """Given a run and the policies it ran, return each policy's figures from the actions it produced.

    Actions of a policy that was not named (none today) still get a row of their own.
    """
    figures = {policy: PolicyFigures() for policy in policies}
    for action in result.plan.actions:
        figures.setdefault(action.policy, PolicyFigures()).actions_planned += 1
    for action_result in result.results:
        entry = figures.setdefault(action_result.action.policy, PolicyFigures())
        if action_result.outcome == "ok":
            entry.actions_ok += 1
            entry.bytes_freed += action_result.bytes_freed
        elif action_result.outcome == "failed":
            entry.actions_failed += 1
        else:
            entry.actions_skipped += 1
    for kept in result.plan.kept:
        if kept.policy in figures:
            figures[kept.policy].kept += 1
    for refusal in result.plan.refusals:
        # A refusal of the whole run's deletions (policy None) counts against every policy of the run.
        for owner in figures if refusal.policy is None else [refusal.policy]:
            if owner in figures:
                figures[owner].refusals += 1
    return figures


def run_outcome(result: RunResult) -> str:
    """Return ``interrupted``, ``failed`` or ``ok`` for a whole run."""
    return "interrupted" if result.interrupted else ("failed" if result.failed else "ok")


def policy_outcome(result: RunResult, figures: PolicyFigures) -> str:
    """Return one policy's outcome in a run: an interrupted run interrupts each of its policies."""
    return "interrupted" if result.interrupted else ("failed" if figures.failed else "ok")


MAX_ERRORS = 20
MAX_ERROR_CHARS = 300


@dataclass
class RunSummary:
    """A run as the outside world sees it (notifications, metrics): whether it ran to the end,
    what each of its policies did, and what went wrong (bounded: MAX_ERRORS, each cut to MAX_ERROR_CHARS).

    ``event``: ``run.finished``, ``run.interrupted``, or ``run.failed`` for a run that stopped
    before acting (audit log unwritable, store shrunk, an internal error).
    """

    event: str
    run_id: str | None
    policies: list[str]
    started_at: datetime
    finished_at: datetime
    figures: dict[str, PolicyFigures]
    outcomes: dict[str, str]
    errors: list[str]
    result: RunResult | None = None

    @property
    def success(self) -> bool:
        return self.event == "run.finished" and all(outcome == "ok" for outcome in self.outcomes.values())

    @property
    def acted(self) -> bool:
        """True when the run had something to do (an action planned or refused) or did not succeed."""
        return not self.success or any(f.actions_planned or f.refusals for f in self.figures.values())

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    def counts(self) -> dict[str, int]:
        """Totals over the run's policies: planned, deleted (actions carried out), failed, skipped, bytes_freed."""
        figures = self.figures.values()
        return {
            "planned": sum(f.actions_planned for f in figures),
            "deleted": sum(f.actions_ok for f in figures),
            "failed": sum(f.actions_failed for f in figures),
            "skipped": sum(f.actions_skipped for f in figures),
            "bytes_freed": sum(f.bytes_freed for f in figures),
        }


def summarize(result: RunResult, policies: list[str], started_at: datetime, finished_at: datetime) -> RunSummary:
    """Given a run that ran (to the end or until interrupted), return its summary."""
    figures = policy_figures(result, policies)
    problems = [
        f"{r.action.action} {_subject(r)} (policy {r.action.policy}): {r.error}" for r in result.results if r.outcome == "failed"
    ]
    problems.extend(refusal.describe() for refusal in result.plan.refusals)
    if result.interrupted:
        problems.append("interrupted: the rest is done by the next run")
    return RunSummary(
        event="run.interrupted" if result.interrupted else "run.finished", run_id=result.run_id, policies=list(policies),
        started_at=started_at, finished_at=finished_at, figures=figures,
        outcomes={policy: policy_outcome(result, entry) for policy, entry in figures.items()},
        errors=bounded_errors(problems), result=result,
    )


def summarize_failure(
    error: str, policies: list[str], started_at: datetime, finished_at: datetime, run_id: str | None
) -> RunSummary:
    """Given why a run could not act, return its summary (``run.failed``, no figures)."""
    return RunSummary(
        event="run.failed", run_id=run_id, policies=list(policies), started_at=started_at, finished_at=finished_at,
        figures={policy: PolicyFigures() for policy in policies}, outcomes={policy: "error" for policy in policies},
        errors=bounded_errors([error]),
    )


def bounded_errors(problems: list[str]) -> list[str]:
    """Return at most MAX_ERRORS texts of at most MAX_ERROR_CHARS each; the last says how many were left out."""
    cut = [text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…" for text in problems]
    if len(cut) <= MAX_ERRORS:
        return cut
    return [*cut[: MAX_ERRORS - 1], f"… and {len(cut) - MAX_ERRORS + 1} more (see the audit log)"]


def _subject(action_result: ActionResult) -> str:
    action = action_result.action
    if action.kind == "deployment":
        return f"deployment {action.provider}/{action.name}"
    return f"{action.kind} {action.name}:{action.version}"
