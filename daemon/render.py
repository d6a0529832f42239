"""Human output: tables of plans, run results, status, deployments and audit records (rich).

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
- Nothing is cut: every column folds a long value onto further lines instead of ending it in "…",
  and off a terminal the console is as wide as the longest line, with no colour and no escape code
  whatever FORCE_COLOR or TTY_COMPATIBLE say, so a pipe or a CI log gets one plain line per row.

tests/daemon/test_render_literal.py feeds hostile text to every public ``print_*`` function (a new one
without a case there fails that test) and to the progress bar.
"""

from __future__ import annotations

import errno
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
from rich.style import Style
from rich.table import Table
from rich.text import Text

from daemon.literal import visible
from policies.durations import format_bytes
from policies.model import Artifact, Inventory, Plan, format_instant

if TYPE_CHECKING:
    from daemon.executor import ActionResult, RunResult

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


def _table(*columns: str, right: tuple[str, ...] = ()) -> Table:
    """Return a borderless table whose cells fold a long value onto further lines instead of cutting it."""
    table = Table(show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in right else "left")
    return table


def print_plan(plan: Plan, inventory: Inventory, outcomes: dict[tuple[str, str, str], str] | None = None) -> None:
    """Print one table per artifact name: every version a policy looked at, kept or deleted, and why."""
    out = console()
    artifacts: dict[tuple[str, str, str], Artifact] = {(a.kind, a.name, a.version): a for a in inventory.artifacts}
    rows: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(dict)
    decisions: dict[tuple[str, str, str], str] = {}
    for action in plan.actions:
        key = (action.kind, action.name, action.version or "")
        decisions[key] = action.action
        rows[(action.kind, action.name)][action.version or ""] = [f"{action.policy}: {r}" for r in action.reasons]
    for kept in plan.kept:
        key = (kept.kind, kept.name, kept.version or "")
        decisions.setdefault(key, "keep")
        rows[(kept.kind, kept.name)].setdefault(kept.version or "", []).extend(f"{kept.policy}: {r}" for r in kept.reasons)
    for (kind, name), versions in sorted(rows.items()):
        # The title is a line of its own: a table title would wrap at the table's width.
        out.print(f"{kind} {name}")
        table = _table("version", "created", "size", "decision", "reasons", right=("size",))
        ordered = sorted(versions, key=lambda version: _created_key(artifacts.get((kind, name, version))), reverse=True)
        for version in ordered:
            artifact = artifacts.get((kind, name, version))
            decision = decisions[(kind, name, version)]
            if outcomes is not None and decision != "keep":
                decision = f"{decision}: {outcomes.get((kind, name, version), '?')}"
            table.add_row(
                version,
                format_instant(artifact.created_at) if artifact and artifact.created_at else "-",
                format_bytes(artifact.size_bytes) if artifact else "-",
                decision,
                "; ".join(versions[version]),
                style="red" if decision.startswith("delete") else None,
            )
        out.print(table)
        out.print()
    _print_totals(out, plan)


def _created_key(artifact: Artifact | None) -> str:
    return artifact.created_at.isoformat() if artifact and artifact.created_at else ""


def _print_totals(out: Console, plan: Plan) -> None:
    deletions = [action for action in plan.actions if action.action == "delete"]
    deployments = Counter(action.action.removesuffix("_deployment") for action in plan.actions if action.kind == "deployment")
    planned_for_deployments = (
        "deployment(s) to " + ", ".join(f"{verb} {count}" for verb, count in sorted(deployments.items())) + "; "
        if deployments else ""
    )
    out.print(
        f"{len(deletions)} version(s) to delete, {format_bytes(plan.bytes_to_free)} to free; {planned_for_deployments}"
        f"{len({(k.kind, k.name, k.version) for k in plan.kept})} kept. (at {format_instant(plan.at)})"
    )
    for warning in plan.warnings:
        out.print(f"warning: {warning}", style="yellow")


def print_run(result: RunResult) -> None:
    """Print the plan of a run with each action's outcome, then the totals of what happened."""
    outcomes = {
        (r.action.kind, r.action.name, r.action.version or ""): r.outcome + (f" ({r.error})" if r.error else "")
        for r in result.results
    }
    for action in result.not_started():
        outcomes[(action.kind, action.name, action.version or "")] = "not started"
    print_plan(result.plan, result.inventory, outcomes)
    counters = result.counters()
    status = f"INTERRUPTED during {result.interrupted_during}" if result.interrupted else "done"
    not_started = f", {counters['actions_not_started']} not started" if result.interrupted else ""
    console().print(
        f"{status}: {counters['actions_ok']} ok, {counters['actions_failed']} failed, "
        f"{counters['actions_skipped']} skipped{not_started}; {format_bytes(result.bytes_freed)} freed."
    )
    for entry in result.trash_stuck:
        console().print(f"warning: {entry.describe()}", style="yellow", markup=False)


def print_audit(records: Iterable[dict[str, Any]]) -> None:
    """Print audit records as a table."""
    table = _table("ts", "run", "event", "policy", "item", "size", "outcome", "error")
    for record in records:
        item = f"{record.get('kind', '')} {record.get('name', '')}:{record.get('version', '')}" if record.get("name") else ""
        size = record.get("size_bytes")
        table.add_row(
            str(record.get("ts", ""))[:19],
            str(record.get("run_id", "")),
            str(record.get("event", "")),
            str(record.get("policy") or ""),
            item,
            format_bytes(size) if isinstance(size, int) else "",
            str(record.get("outcome") or ""),
            str(record.get("error") or ""),
        )
    console().print(table)


def print_status(report: dict[str, Any]) -> None:
    """Print the status report: store per name and its warnings, disk limits, trash, policies, deployments."""
    out = console()
    store = report["store"]
    out.print(f"store {store['home']}: {store['versions']} versions, {format_bytes(store['size_bytes'])}")
    table = _table("kind", "name", "versions", "size", "oldest", "newest", right=("versions", "size"))
    for entry in store["names"]:
        table.add_row(entry["kind"], entry["name"], str(entry["versions"]), format_bytes(entry["size_bytes"]),
                      entry["oldest"] or "-", entry["newest"] or "-")
    out.print(table)
    if "in_use" in store:
        read = store.get("read_recently")
        out.print(f"in use by running processes: {store['in_use']} version(s)"
                  + (f"; read recently (keep_used_within): {read} version(s)" if read is not None else ""))
    for warning in store.get("warnings", []):
        out.print(f"warning: {warning}", style="yellow")
    disk = report["disk"]
    out.print()
    out.print(f"disk: {disk['used_ratio']:.1%} used ({format_bytes(disk['used_bytes'])} of {format_bytes(disk['total_bytes'])})")
    for limits in disk["policies"]:
        keys = ("high_watermark", "low_watermark", "max_store_size")
        settings = ", ".join(f"{key} {limits[key]['setting']}" for key in keys if key in limits)
        last = limits.get("last_evaluation") or {}
        blocked = "" if last.get("reached", True) else f"; target not reachable, blocked {last.get('blocked_by')}"
        out.print(f"  {limits['name']}: {settings}{blocked}")
    trash = report["trash"]
    out.print(f"trash: {trash['versions']} version(s), {format_bytes(trash['size_bytes'])}")
    stuck = trash["stuck"]
    if stuck["entries"]:
        out.print(
            f"  {stuck['entries']} entr{'y' if stuck['entries'] == 1 else 'ies'} cannot be purged "
            f"({format_bytes(stuck['size_bytes'])} still on disk), retried every run; first: {stuck['first_error']}",
            style="yellow",
        )
    backup = report.get("backup")
    if backup is not None:
        out.print(_describe_backup(backup))
    out.print("policies")
    policies = _table("policy", "kind", "last run", "outcome", "deleted", "freed", "next run")
    for policy in report["policies"]:
        last = policy["last_run"] or {}
        policies.add_row(policy["name"], policy["kind"], str(last.get("at", "never")), str(last.get("outcome", "-")),
                         str(last.get("actions_ok", "-")), format_bytes(last["bytes_freed"]) if last else "-",
                         policy["next_run"] or (f"every {policy['check_interval']}" if policy["check_interval"] else "-"))
    out.print(policies)
    for policy in report["policies"]:
        if "savings" in policy:
            saved = policy["savings"]
            cost = f", {saved['cost_saved']:.2f} saved" if saved["cost_saved"] is not None else ""
            out.print(f"  {policy['name']}: {saved['deployment_hours_saved']:.1f} deployment-hours down{cost}; "
                      f"{saved['deployments_down']} down now")
    if report["deployments"]:
        out.print()
        out.print("deployments")
        print_deployments(report["deployments"])


def _describe_backup(backup: dict[str, Any]) -> str:
    head = f"backup: require_pushed {backup['provider']}"
    if backup["source"] != "last run":
        return f"{head}: {backup['source']}"
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(backup["by_reason"].items()))
    held = f"{backup['held_back_versions']} version(s), {format_bytes(backup['held_back_bytes'])} held back"
    error = f"; registry error: {backup['registry_error']}" if backup.get("registry_error") else ""
    return f"{head} (last run {backup['at']}): {held}{' (' + reasons + ')' if reasons else ''}{error}"


def print_deployments(rows: list[dict[str, Any]]) -> None:
    """Print deployments with their owner record, what off-hours decides now, and the next window change."""
    table = _table("provider", "name", "status", "owner", "policy", "now", "next change", "why")
    for row in rows:
        table.add_row(
            str(row["provider"] or "-"), str(row["name"] or "-"), str(row["status"]), str(row.get("owner") or "-"),
            str(row.get("policy") or "-"), str(row.get("now") or "-"), str(row.get("next_window_change") or "-"),
            "; ".join(str(reason) for reason in row["reasons"]),
        )
    console().print(table)


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
        freed = result.action.size_bytes or 0 if result.outcome == "ok" else 0
        self._progress.update(self._task, advance=freed, item=f"{result.action.name}:{result.action.version}")

    def stop(self) -> None:
        self._progress.stop()
