"""Human output: tables of plans, run results and audit records (rich)."""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from daemon.executor import RunResult
from policies.durations import format_bytes
from policies.model import Artifact, Inventory, Plan, format_instant


def console() -> Console:
    """Return a console on stdout; off a terminal, wide enough that lines do not wrap."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, width=240, no_color=True)


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
        table = Table(title=f"{kind} {name}", title_justify="left", show_edge=False, pad_edge=False)
        for column in ("version", "created", "size", "decision", "reasons"):
            table.add_column(column, no_wrap=column != "reasons", justify="right" if column == "size" else "left")
        ordered = sorted(versions, key=lambda version: _created_key(artifacts.get((kind, name, version))), reverse=True)
        for version in ordered:
            artifact = artifacts.get((kind, name, version))
            decision = decisions[(kind, name, version)]
            if outcomes is not None and decision != "keep":
                decision = f"{decision}: {outcomes.get((kind, name, version), '?')}"
            style = "red" if decision.startswith("delete") else None
            table.add_row(
                version,
                format_instant(artifact.created_at) if artifact and artifact.created_at else "-",
                format_bytes(artifact.size_bytes) if artifact else "-",
                decision,
                "; ".join(versions[version]),
                style=style,
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


def print_audit(records: Iterable[dict[str, Any]]) -> None:
    """Print audit records as a table."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("ts", "run", "event", "policy", "item", "size", "outcome", "error"):
        table.add_column(column, no_wrap=column not in ("error",))
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
    """Print the status report: store per name, disk limits, trash, policies."""
    out = console()
    store = report["store"]
    out.print(f"store {store['home']}: {store['versions']} versions, {format_bytes(store['size_bytes'])}")
    table = Table(show_edge=False, pad_edge=False)
    for column in ("kind", "name", "versions", "size", "oldest", "newest"):
        table.add_column(column, justify="right" if column in ("versions", "size") else "left")
    for entry in store["names"]:
        table.add_row(entry["kind"], entry["name"], str(entry["versions"]), format_bytes(entry["size_bytes"]),
                      entry["oldest"] or "-", entry["newest"] or "-")
    out.print(table)
    disk = report["disk"]
    out.print(f"\ndisk: {disk['used_ratio']:.1%} used ({format_bytes(disk['used_bytes'])} of {format_bytes(disk['total_bytes'])})")
    for limits in disk["policies"]:
        keys = ("high_watermark", "low_watermark", "max_store_size")
        settings = ", ".join(f"{key} {limits[key]['setting']}" for key in keys if key in limits)
        last = limits.get("last_evaluation") or {}
        blocked = "" if last.get("reached", True) else f"; target not reachable, blocked {last.get('blocked_by')}"
        out.print(f"  {limits['name']}: {settings}{blocked}")
    trash = report["trash"]
    out.print(f"trash: {trash['versions']} version(s), {format_bytes(trash['size_bytes'])}")
    policies = Table(title="policies", title_justify="left", show_edge=False, pad_edge=False)
    for column in ("policy", "kind", "last run", "outcome", "deleted", "freed", "next run"):
        policies.add_column(column)
    for policy in report["policies"]:
        last = policy["last_run"] or {}
        policies.add_row(policy["name"], policy["kind"], last.get("at", "never"), last.get("outcome", "-"),
                         str(last.get("actions_ok", "-")), format_bytes(last["bytes_freed"]) if last else "-",
                         policy["next_run"] or (f"every {policy['check_interval']}" if policy["check_interval"] else "-"))
    out.print(policies)
    if report["deployments"]:
        out.print("\ndeployments")
        print_deployments(report["deployments"])


def print_deployments(rows: list[dict[str, Any]]) -> None:
    """Print deployments with their owner record, what off-hours decides now, and the next window change."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("provider", "name", "status", "owner", "policy", "now", "next change", "why"):
        table.add_column(column, no_wrap=column != "why")
    for row in rows:
        table.add_row(
            str(row["provider"] or "-"), str(row["name"] or "-"), str(row["status"]), str(row.get("owner") or "-"),
            str(row.get("policy") or "-"), str(row.get("now") or "-"), str(row.get("next_window_change") or "-"),
            "; ".join(row["reasons"]),
        )
    console().print(table)
