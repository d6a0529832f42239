"""Human output of plans and run results, and the console every human output goes through (rich).

``daemon.render_status`` (status, deployments) and ``daemon.render_audit`` (audit records) print through
the same console; ``daemon.render_table`` lays every table out for the terminal's width or for a pipe.

Nearly every string shown here comes from someone else: names, versions and labels from the store,
policy names, selectors and paths from the config, names, statuses and errors from a provider,
fields of the audit log. They are shown literally, and that is made structural rather than remembered:

- Every string reaches the screen through :func:`console`, whose ``render_str`` (the one door rich
  uses for a plain string, in ``print``, in a table cell, in a progress column) never reads markup,
  emoji codes or highlighting, and shows control characters as escapes (``\\x1b``, ``\\n``;
  :func:`daemon.literal.visible`). So ``[/keep]`` prints as ``[/keep]``, and a value cannot colour the
  terminal, move its cursor or forge a line of output of its own.
- Renderers therefore pass plain ``str`` values, one ``print`` call per line, and give styles as
  arguments (``style="red"``), never inside the text. Do not build ``Text`` or ``Text.from_markup``
  from a value, and do not create another ``Console``: both would bypass that door.
- Nothing is cut: ids, timestamps and sizes keep their whole width, reasons wrap under their row or
  move to a line of their own (daemon.render_table), and off a terminal the console is as wide as the
  longest line, with no colour and no escape code whatever FORCE_COLOR or TTY_COMPATIBLE say, so a pipe
  or a CI log gets one plain line per row, with no trailing spaces.

tests/daemon/test_render_literal.py feeds hostile text to every public ``print_*`` function of these
modules (a new one without a case there fails that test) and to the progress bar;
tests/daemon/test_screen.py looks at the real commands in an 80-column terminal.
"""

from __future__ import annotations

import errno
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
from rich.style import Style
from rich.text import Text

from daemon.literal import visible
from daemon.render_table import HEADER, MIN_WRAP_WIDTH, Cell, Column, layout, wrap
from policies.durations import format_bytes
from policies.model import Artifact, Inventory, Plan, format_instant

if TYPE_CHECKING:
    from daemon.executor import ActionResult, RunResult

# The console type the renderers of daemon.render_status and daemon.render_audit print on (only this module imports rich).
Output = Console
# Off a terminal nothing wraps: a reader (grep, a CI log) gets each row on one line, however long.
OFF_TERMINAL_WIDTH = 1 << 24


class _LiteralConsole(Console):
    """A rich console on which every string is literal text (see the module docstring)."""

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: JustifyMethod | None = None,
        overflow: OverflowMethod | None = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: HighlighterType | None = None,
    ) -> Text:
        return super().render_str(
            visible(text), style=style, justify=justify, overflow=overflow, emoji=False, markup=False, highlight=False
        )

    def on_broken_pipe(self) -> None:
        # rich would exit 1 here. The reader going away (`plan | head`) is not our failure, and `apply`
        # must still exit with what its run did: the callers decide (daemon.cli, daemon.commands).
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader of stdout went away")


def console() -> Console:
    """Return a console on stdout on which every string prints literally; off a terminal, plain and unwrapped."""
    if sys.stdout.isatty():
        return _LiteralConsole(markup=False, emoji=False, highlight=False)
    return _LiteralConsole(
        markup=False, emoji=False, highlight=False, width=OFF_TERMINAL_WIDTH,
        force_terminal=False, color_system=None, no_color=True,
    )


def print_table(
    out: Console, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], styles: Sequence[str | None] = (),
    min_wrap: int = MIN_WRAP_WIDTH,
) -> None:
    """Print a table laid out for the terminal's width (see daemon.render_table), or for a pipe; ``styles`` per row."""
    for line in layout(columns, rows, out.width if out.is_terminal else None, min_wrap):
        style = "bold" if line.row == HEADER else (styles[line.row] if line.row < len(styles) else None)
        out.print(line.text, style=style)


def print_paragraph(out: Console, text: str, indent: int = 0, style: str | None = None) -> None:
    """Print a sentence indented by ``indent``; on a terminal wrapped at its width, continuation lines two further in.

    Off a terminal it stays one line, so a pipe gets one line per sentence.
    """
    if not out.is_terminal:
        out.print(" " * indent + text, style=style)
        return
    lines = wrap(visible(text), max(out.width - indent, MIN_WRAP_WIDTH), max(out.width - indent - 2, MIN_WRAP_WIDTH))
    for number, line in enumerate(lines):
        out.print(" " * (indent if number == 0 else indent + 2) + line, style=style)


@dataclass
class _Decided:
    """What the policies decided for one version or deployment, with every reason, each with its policy."""

    decision: str
    reasons: list[tuple[str, str]] = field(default_factory=list)
    provider: str | None = None


def _decisions(plan: Plan) -> dict[tuple[str, str], dict[str, _Decided]]:
    """Return, per (kind, name), each version's (or deployment's, version "") decision and reasons."""
    decided: dict[tuple[str, str], dict[str, _Decided]] = defaultdict(dict)
    for action in plan.actions:
        entry = decided[(action.kind, action.name)].setdefault(action.version or "", _Decided(action.action))
        entry.decision, entry.provider = action.action, action.provider
        entry.reasons.extend((action.policy, reason) for reason in action.reasons)
    for kept in plan.kept:
        entry = decided[(kept.kind, kept.name)].setdefault(kept.version or "", _Decided("keep"))
        entry.reasons.extend((kept.policy, reason) for reason in kept.reasons)
    return decided


def _reasons(entry: _Decided, single_policy: bool) -> list[str]:
    return [reason if single_policy else f"{policy}: {reason}" for policy, reason in entry.reasons]


def print_plan(plan: Plan, inventory: Inventory, outcomes: dict[tuple[str, str, str], str] | None = None) -> None:
    """Print one table per artifact name (every version a policy looked at, kept or deleted, and why), then one
    table of deployments, then the totals. ``outcomes`` (of a run) are shown next to each decision."""
    out = console()
    artifacts: dict[tuple[str, str, str], Artifact] = {(a.kind, a.name, a.version): a for a in inventory.artifacts}
    decided = _decisions(plan)
    for (kind, name), versions in sorted(decided.items()):
        if kind == "deployment":
            continue
        policies = sorted({policy for entry in versions.values() for policy, _ in entry.reasons})
        single = len(policies) == 1
        counts = Counter(entry.decision for entry in versions.values())
        freed = sum(
            artifacts[(kind, name, version)].usage_bytes for version, entry in versions.items()
            if entry.decision == "delete" and (kind, name, version) in artifacts
        )
        # The title is a line of its own, with the policy when only one decided this name (its reasons then go without it).
        print_paragraph(out, f"{kind} {name}" + (f" (policy {policies[0]})" if single else "")
                        + f": delete {counts['delete']} ({format_bytes(freed)} on disk), keep {counts['keep']}")
        ordered = sorted(versions, key=lambda version: _created_key(artifacts.get((kind, name, version))), reverse=True)
        rows, styles = [], []
        for version in ordered:
            artifact = artifacts.get((kind, name, version))
            entry = versions[version]
            decision, notes = _with_outcome(entry.decision, outcomes, (kind, name, version))
            rows.append((
                version,
                format_instant(artifact.created_at) if artifact and artifact.created_at else "-",
                format_bytes(artifact.usage_bytes) if artifact else "-",
                decision,
                notes + _reasons(entry, single),
            ))
            styles.append("red" if entry.decision == "delete" else None)
        print_table(out, PLAN_COLUMNS, rows, styles)
        out.print()
    _print_deployment_decisions(out, decided, outcomes)
    _print_totals(out, plan)


# Sizes are disk usage (as du counts it): what deleting a version frees. JSON has both (size_bytes, disk_bytes).
PLAN_COLUMNS = (Column("VERSION"), Column("CREATED"), Column("ON DISK", right=True), Column("DECISION"),
                Column("REASONS", detail=True))


def _with_outcome(
    decision: str, outcomes: dict[tuple[str, str, str], str] | None, key: tuple[str, str, str]
) -> tuple[str, list[str]]:
    """Return the decision, with the outcome of a run beside it ("delete: failed"), and the outcome's error as a note."""
    if outcomes is None or decision == "keep":
        return decision, []
    outcome, _, error = outcomes.get(key, "?").partition(": ")
    return f"{decision}: {outcome}", [f"{outcome}: {error}"] if error else []


def _print_deployment_decisions(
    out: Console, decided: dict[tuple[str, str], dict[str, _Decided]], outcomes: dict[tuple[str, str, str], str] | None
) -> None:
    deployments = {name: versions[""] for (kind, name), versions in decided.items() if kind == "deployment" and "" in versions}
    if not deployments:
        return
    out.print("deployments")
    rows, styles = [], []
    for name, entry in sorted(deployments.items()):
        decision, notes = _with_outcome(entry.decision, outcomes, ("deployment", name, ""))
        rows.append((name, entry.provider or "-", decision, notes + _reasons(entry, False)))
        styles.append(None if entry.decision == "keep" else "red")
    print_table(out, (Column("NAME"), Column("PROVIDER"), Column("DECISION"), Column("REASONS", detail=True)), rows, styles)
    out.print()


def _created_key(artifact: Artifact | None) -> str:
    return artifact.created_at.isoformat() if artifact and artifact.created_at else ""


def _print_totals(out: Console, plan: Plan) -> None:
    deletions = [action for action in plan.actions if action.action == "delete"]
    deployments = Counter(action.action.removesuffix("_deployment") for action in plan.actions if action.kind == "deployment")
    planned_for_deployments = (
        "deployment(s) to " + ", ".join(f"{verb} {count}" for verb, count in sorted(deployments.items())) + "; "
        if deployments else ""
    )
    print_paragraph(
        out,
        f"{len(deletions)} version(s) to delete, {format_bytes(plan.bytes_to_free)} to free; {planned_for_deployments}"
        f"{len({(k.kind, k.name, k.version) for k in plan.kept})} kept. (at {format_instant(plan.at)})",
    )
    for warning in plan.warnings:
        print_paragraph(out, f"warning: {warning}", style="yellow")


def print_plan_summary(plan: Plan, inventory: Inventory) -> None:
    """Print one line per policy and artifact name (delete N, keep M, bytes to free), one per off-hours policy
    and provider (terminate, restart, delete, keep), then the totals line."""
    out = console()
    names: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    deployments: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for action in plan.actions:
        if action.kind == "deployment":
            deployments[(action.policy, action.provider or "-")][action.action] += 1
            continue
        counts = names[(action.policy, action.kind, action.name)]
        counts["delete"] += 1
        counts["bytes"] += action.usage_bytes
    provider_of = {deployment.name: deployment.provider for deployment in inventory.deployments}
    for kept in plan.kept:
        if kept.kind == "deployment":
            deployments[(kept.policy, provider_of.get(kept.name, "-"))]["keep"] += 1
        else:
            names[(kept.policy, kept.kind, kept.name)]["keep"] += 1
    if names:
        print_table(out, SUMMARY_COLUMNS, [
            (policy, kind, str(counts["delete"]), str(counts["keep"]), format_bytes(counts["bytes"]), [name])
            for (policy, kind, name), counts in sorted(names.items())
        ], [("red" if counts["delete"] else None) for _, counts in sorted(names.items())])
    if deployments:
        if names:
            out.print()
        verbs = {"terminate": "TERMINATE", "restart": "RESTART", "delete_deployment": "DELETE", "keep": "KEEP"}
        print_table(out, (Column("POLICY"), Column("PROVIDER"), *(Column(header, right=True) for header in verbs.values())), [
            (policy, provider, *(str(counts[verb]) for verb in verbs)) for (policy, provider), counts in sorted(deployments.items())
        ])
    _print_totals(out, plan)


# The name goes last: a long one then folds in its own column instead of pushing the figures off the screen.
SUMMARY_COLUMNS = (Column("POLICY"), Column("KIND"), Column("DELETE", right=True), Column("KEEP", right=True),
                   Column("TO FREE", right=True), Column("NAME", detail=True))


def print_run(result: RunResult, held_for: str | None = None, purging: frozenset[str] = frozenset()) -> None:
    """Print the plan of a run with each action's outcome, then the totals of what happened. ``held_for``: the
    undo window (``store.trash_retention``), in which deletions of policies other than ``purging`` stay in the
    trash: their disk space is not freed by this run, which the last line says."""
    outcomes = {
        (r.action.kind, r.action.name, r.action.version or ""): r.outcome + (f": {r.error}" if r.error else "")
        for r in result.results
    }
    for action in result.not_started():
        outcomes[(action.kind, action.name, action.version or "")] = "not started"
    print_plan(result.plan, result.inventory, outcomes)
    counters = result.counters()
    status = f"INTERRUPTED during {result.interrupted_during}" if result.interrupted else "done"
    not_started = f", {counters['actions_not_started']} not started" if result.interrupted else ""
    held = [] if held_for is None else [
        r for r in result.results if r.action.kind != "deployment" and r.outcome == "ok" and r.action.policy not in purging
    ]
    held_bytes = sum(r.bytes_freed for r in held)
    out = console()
    print_paragraph(
        out,
        f"{status}: {counters['actions_ok']} ok, {counters['actions_failed']} failed, "
        f"{counters['actions_skipped']} skipped{not_started}; {format_bytes(result.bytes_freed - held_bytes)} freed.",
    )
    if held:
        print_paragraph(
            out,
            f"{len(held)} deleted version(s), {format_bytes(held_bytes)} on disk, stay in the trash for {held_for} "
            "(store.trash_retention), freed when it is purged; `retentiond restore NAME:VERSION` takes one back.",
        )
    for entry in result.trash_stuck:
        print_paragraph(out, f"warning: {entry.describe()}", style="yellow")


class ProgressBar:
    """A transient bar of bytes freed, for `apply` on a terminal. Its item column is a plain format string,
    so rich hands the text to the console's ``render_str`` like every table cell."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress

        self._progress = Progress(
            "deleting", BarColumn(), DownloadColumn(binary_units=True), "{task.fields[item]}",
            console=console(), transient=True,
        )
        self._task = self._progress.add_task("delete", total=0, item="")

    def begin(self, plan: Plan) -> None:
        self._progress.update(self._task, total=plan.bytes_to_free or 1)
        self._progress.start()

    def advance(self, result: ActionResult) -> None:
        self._progress.update(self._task, advance=result.bytes_freed, item=f"{result.action.name}:{result.action.version}")

    def stop(self) -> None:
        self._progress.stop()
