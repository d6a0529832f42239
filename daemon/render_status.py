"""Human output of ``status`` and ``deployments list``: tables where values line up, words everywhere else.

Every line goes through :func:`daemon.render.console` (literal text) and every table through
:func:`daemon.render.print_table`. The report is read defensively: ``status`` shows a state file
written by another version, or edited by hand, without a traceback and without Python reprs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daemon.render import Output, console, print_paragraph, print_table
from daemon.render_table import Column
from policies.durations import format_bytes

NAME_COLUMNS = (
    Column("NAME"), Column("VERSIONS", right=True), Column("ON DISK", right=True),
    Column("OLDEST", detail=True), Column("NEWEST", detail=True),
)
DEPLOYMENT_COLUMNS = (
    Column("NAME"), Column("PROVIDER"), Column("STATUS"), Column("NOW"), Column("NEXT CHANGE"), Column("WHY", detail=True),
)


def print_status(report: dict[str, Any]) -> None:
    """Print the status report: store per name and its warnings, disk limits, trash, policies, deployments."""
    out = console()
    _print_store(out, report["store"])
    out.print()
    _print_disk(out, report["disk"])
    _print_trash(out, report["trash"])
    backup = report.get("backup")
    if isinstance(backup, Mapping):
        print_paragraph(out, _describe_backup(backup))
    out.print()
    out.print("policies")
    if not report["policies"]:
        print_paragraph(out, "none configured: nothing is ever deleted or terminated", indent=2)
    for policy in report["policies"]:
        print_paragraph(out, _describe_policy(policy), indent=2)
    if report["deployments"]:
        out.print()
        out.print("deployments")
        print_deployments(report["deployments"])


def _print_store(out: Output, store: dict[str, Any]) -> None:
    names = store["names"]
    on_disk = f", {_bytes(store.get('disk_bytes'))} on disk" if "disk_bytes" in store else ""
    print_paragraph(out, f"store {store['home']}: {_count(store['versions'], 'version')} of {_count(len(names), 'name')}, "
                    f"{format_bytes(store['size_bytes'])} apparent size{on_disk}")
    for kind in ("model", "bento"):
        rows = [entry for entry in names if entry["kind"] == kind]
        if rows:
            out.print(f"{kind}s")
            print_table(out, NAME_COLUMNS, [
                (entry["name"], str(entry["versions"]), _bytes(entry.get("disk_bytes", entry["size_bytes"])),
                 entry["oldest"] or "unknown", entry["newest"] or "unknown")
                for entry in rows
            ])
    if "in_use" in store:
        read = store.get("read_recently")
        print_paragraph(out, f"in use by running processes: {_count(store['in_use'], 'version')}"
                        + (f"; read recently (keep_used_within): {_count(read, 'version')}" if read is not None else ""))
    for warning in store.get("warnings", []):
        print_paragraph(out, f"warning: {warning}", style="yellow")


def _print_disk(out: Output, disk: dict[str, Any]) -> None:
    print_paragraph(out, f"disk: {disk['used_ratio']:.1%} used, {format_bytes(disk['used_bytes'])} of "
                    f"{format_bytes(disk['total_bytes'])} (the filesystem holding the store)")
    for limits in disk["policies"]:
        print_paragraph(out, f"{limits['name']}: {_describe_disk_limits(limits)}", indent=2)


def _describe_disk_limits(limits: Mapping[str, Any]) -> str:
    """Given one disk policy's entry of the status report, return its limits and last evaluation in words."""
    parts = []
    high, low, budget = (limits.get(key) for key in ("high_watermark", "low_watermark", "max_store_size"))
    if isinstance(high, Mapping):
        low_text = f" down to low_watermark {low['setting']}" if isinstance(low, Mapping) else ""
        parts.append(f"evicts above high_watermark {high['setting']}{low_text}")
    if isinstance(budget, Mapping):
        over = limits.get("store_over_budget")
        parts.append(f"store budget max_store_size {budget['setting']}" + (" (over it now)" if over else ""))
    text = "; ".join(parts) or "no limit set"
    last = limits.get("last_evaluation")
    if isinstance(last, Mapping):
        text += f"; {_describe_evaluation(last)}"
    return text


def _describe_evaluation(last: Mapping[str, Any]) -> str:
    """Return a disk policy's last evaluation in words: triggered or not, and what blocked its target."""
    when = f"last evaluated {last.get('at') or 'at an unknown time'}"
    if not last.get("triggers"):
        return f"{when}: within its limits"
    if last.get("reached", True):
        return f"{when}: evicted {_bytes(last.get('planned_bytes'))}"
    blocked = last.get("blocked_by")
    if isinstance(blocked, Mapping) and blocked:
        by = ", ".join(f"{reason} ({_bytes(size)})" for reason, size in sorted(blocked.items()))
    else:
        by = str(blocked) if blocked else "nothing left to evict"
    return (f"{when}: target not reachable, needed {_bytes(last.get('needed_bytes'))}, "
            f"could free {_bytes(last.get('planned_bytes'))}; blocked by {by}")


def _describe_backup(backup: Mapping[str, Any]) -> str:
    """Return what ``store.require_pushed`` held back at the last run, in words."""
    head = f"backup: require_pushed {backup.get('provider')}"
    if backup.get("source") != "last run":
        return f"{head}: {backup.get('source')}"
    by_reason = backup.get("by_reason")
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(by_reason.items())) if isinstance(by_reason, Mapping) else ""
    held = f"{_count(backup.get('held_back_versions') or 0, 'version')}, {_bytes(backup.get('held_back_bytes'))} held back"
    error = f"; registry error: {backup['registry_error']}" if backup.get("registry_error") else ""
    return f"{head} (last run {backup.get('at')}): {held}{' (' + reasons + ')' if reasons else ''}{error}"


def _print_trash(out: Output, trash: dict[str, Any]) -> None:
    print_paragraph(out, f"trash: {_count(trash['versions'], 'version')}, {_bytes(trash.get('disk_bytes', trash['size_bytes']))} on disk")
    stuck = trash["stuck"]
    if stuck["entries"]:
        print_paragraph(
            out,
            f"{stuck['entries']} entr{'y' if stuck['entries'] == 1 else 'ies'} cannot be purged "
            f"({_bytes(stuck.get('disk_bytes', stuck['size_bytes']))} still on disk), retried every run; first: {stuck['first_error']}",
            indent=2, style="yellow",
        )


def _describe_policy(policy: Mapping[str, Any]) -> str:
    """Given one policy's entry of the status report, return one sentence: its last run, the next, its savings."""
    text = f"{policy['name']} ({policy['kind']}): {_describe_last_run(policy.get('last_run'), policy['kind'])}"
    if policy.get("next_run"):
        text += f"; next run {policy['next_run']}"
    elif policy.get("check_interval"):
        text += f"; checks the disk every {policy['check_interval']}"
    elif policy["kind"] == "retention":
        text += "; no schedule: runs only with `retentiond apply`"
    saved = policy.get("savings")
    if isinstance(saved, Mapping):
        cost = f", {saved['cost_saved']:.2f} saved" if saved.get("cost_saved") is not None else ""
        text += (f"; {saved['deployment_hours_saved']:.1f} deployment-hours down{cost}, "
                 f"{_count(saved['deployments_down'], 'deployment')} down now")
    return text


def _describe_last_run(last: Any, kind: str) -> str:
    """Return a policy's last run in words ("never run"; "last run AT: ok, 3 deleted, 1.2 KiB freed")."""
    if not isinstance(last, Mapping):
        return "never run"
    outcome = str(last.get("outcome") or "unknown outcome")
    if last.get("interrupted_during"):
        outcome += f" during {last['interrupted_during']}"
    done = "deleted" if kind in ("retention", "disk") else "done"
    figures = [f"{last.get('actions_ok', 0)} {done}"]
    for key, word in (("actions_failed", "failed"), ("actions_skipped", "skipped")):
        if last.get(key):
            figures.append(f"{last[key]} {word}")
    if last.get("refusals"):
        figures.append("refused by a safety limit")
    if kind in ("retention", "disk"):
        figures.append(f"{_bytes(last.get('bytes_freed'))} freed")
    return f"last run {last.get('at') or 'at an unknown time'}: {outcome}, {', '.join(figures)}"


def print_deployments(rows: list[dict[str, Any]]) -> None:
    """Print deployments with their owner record, what off-hours decides now and why, and the next window change;
    then one line per provider that could not list."""
    out = console()
    listed = [row for row in rows if row.get("name") is not None]
    if listed:
        print_table(out, DEPLOYMENT_COLUMNS, [
            (str(row["name"]), str(row.get("provider") or "-"), str(row.get("status") or "unknown"),
             str(row.get("now") or "-"), str(row.get("next_window_change") or "none"), _why(row))
            for row in listed
        ])
    elif not rows:
        out.print("no deployments")
    for row in rows:
        if row.get("name") is None:
            for reason in row.get("reasons") or ["cannot list"]:
                print_paragraph(out, f"error: {reason}", style="red")


def _why(row: Mapping[str, Any]) -> list[str]:
    reasons = [str(reason) for reason in row.get("reasons") or []]
    if row.get("policy"):
        reasons = [f"policy {row['policy']}", *reasons]
    if row.get("owner"):
        reasons = [f"owner: {row['owner']}", *reasons]
    return reasons


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _bytes(value: Any) -> str:
    return format_bytes(value) if isinstance(value, int) else "an unknown amount"
