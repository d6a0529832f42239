"""The CLI's command handlers: call the runner, print results. Each returns an exit code."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.config import load_config
from daemon.errors import EXIT_ACTIONS_FAILED, EXIT_OK, RestoreError, RunInterrupted, UsageError
from daemon.instants import parse_instant, utc_now
from daemon.literal import print_line

if TYPE_CHECKING:
    from daemon.config import Settings
    from daemon.executor import RunResult
    from daemon.progress import ProgressLines
    from daemon.render import ProgressBar
    from policies.model import Plan

# Start-up time is most of a small `plan` or `apply`, so each handler imports what only it needs:
# the runner (store, executor, policies), the audit reader, and rich (daemon.render) only for human
# output. tests/daemon/test_lazy_imports.py holds the --json paths to that.


def print_json(data: Any) -> None:
    # json.dumps runs the C encoder; json.dump streams through the pure-Python one (0.8 s against 0.2 s for a 100k plan).
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def run(arguments: argparse.Namespace) -> int:
    from daemon.service import run_service

    return run_service(arguments.config)


def plan(arguments: argparse.Namespace) -> int:
    from daemon.runner import make_plan

    settings = load_config(arguments.config).settings
    at = parse_instant(arguments.at) if arguments.at else utc_now()
    planned = make_plan(settings, at, arguments.policy)
    if arguments.json:
        print_json(planned.plan.to_dict())
    else:
        from daemon import render
        if arguments.summary:
            render.print_plan_summary(planned.plan, planned.inventory)
        else:
            render.print_plan(planned.plan, planned.inventory)
    say_refusals(planned.plan)
    # The code `apply` would exit with on this store at this instant: a safety limit that refuses is a failure.
    return EXIT_ACTIONS_FAILED if planned.plan.refusals else EXIT_OK


def say_refusals(plan: Plan) -> None:
    """Name on stderr each safety limit that refused actions (the reason the exit code is 1), also under --json."""
    for refusal in plan.refusals:
        print_line(f"retentiond: refused: {refusal.describe()}", sys.stderr)


def apply(arguments: argparse.Namespace) -> int:
    from daemon.fleet import observed_run
    from daemon.runner import apply_once
    from daemon.stop import StopRequest

    # SIGINT/SIGTERM stop the run at its next safe point (daemon.stop); the handlers go before printing.
    with StopRequest() as stop:
        settings = load_config(arguments.config).settings
        bar: ProgressBar | ProgressLines
        if sys.stdout.isatty() and not arguments.json:
            from daemon.render import ProgressBar
            bar = ProgressBar()
        else:
            # Off a terminal (a CI log) a line every few seconds instead, and only for a run that takes that long.
            from daemon.progress import ProgressLines
            bar = ProgressLines()
        try:
            result = observed_run(
                settings, sorted(arguments.policy or settings.policy_names()),
                lambda on_locked: apply_once(
                    settings, arguments.policy, wait_seconds=arguments.wait, progress=bar,
                    accept_shrink=arguments.accept_shrink, stop=stop.event, on_locked=on_locked,
                ),
                daemon=False,
            )
        except RunInterrupted as error:
            print_line(f"retentiond: {stop.signal_name}: {error}", sys.stderr)
            return stop.exit_code
        finally:
            _after_acting(EXIT_OK, bar.stop)  # the bar is cosmetic: a fault in it must not replace the outcome
    if result.interrupted:
        exit_code = stop.exit_code
    else:
        exit_code = EXIT_ACTIONS_FAILED if result.failed else EXIT_OK
    return _after_acting(exit_code, lambda: _print_run(result, arguments.json, stop.signal_name, settings))


def _print_run(result: RunResult, as_json: bool, signal_name: str | None, settings: Settings) -> None:
    if as_json:
        print_json(result.to_dict())
    else:
        from daemon import render
        retention = settings.store.trash_retention if settings.store.trash_retention_span is not None else None
        render.print_run(result, retention.text if retention else None, frozenset(p.name for p in settings.disk))
    say_refusals(result.plan)
    if result.interrupted:
        counters = result.counters()
        print_line(
            f"retentiond: {signal_name}: run interrupted during {result.interrupted_during}: "
            f"{counters['actions_ok']} done, {counters['actions_failed']} failed, {counters['actions_skipped']} skipped, "
            f"{counters['actions_not_started']} not started; the next run carries on",
            sys.stderr,
        )


def _after_acting(exit_code: int, show: Callable[[], None]) -> int:
    """Given the exit code of something already done and audited, show it and return that code, whatever showing raises.

    A closed pipe (`apply | head`) or a fault in a renderer must neither hide that an action failed behind
    exit 0 nor turn a finished run into a traceback: the audit log holds every outcome either way.
    """
    try:
        show()
    except BrokenPipeError:
        # As the CLI does for a reader that went away; its own handler would answer 0 whatever happened.
        sys.stderr.close()
    except Exception as error:  # the boundary after acting: report it, keep the run's exit code
        print_line(f"retentiond: done, but the result could not be shown ({type(error).__name__}: {error}); "
                   "every outcome is in the audit log", sys.stderr)
    return exit_code


def status(arguments: argparse.Namespace) -> int:
    from daemon.status import collect_status

    settings = load_config(arguments.config).settings
    report = collect_status(settings, utc_now())
    if arguments.json:
        print_json(report)
    else:
        from daemon.render_status import print_status
        print_status(report)
    return _listing_exit_code(report["deployments"])


def _listing_exit_code(rows: list[dict[str, Any]]) -> int:
    """Exit 1 when a provider could not list its deployments (an error row naming the provider): the answer is
    incomplete. A note without a provider (a partial listing, unreadable ownership records) is shown, not failed."""
    failed = any(row.get("status") == "error" and row.get("name") is None and row.get("provider") for row in rows)
    return EXIT_ACTIONS_FAILED if failed else EXIT_OK


def window(arguments: argparse.Namespace) -> int:
    from policies.windows import TimeSpec

    try:
        spec = TimeSpec.parse(arguments.spec, arguments.holiday, arguments.holiday_timezone)
    except ValueError as error:
        raise UsageError(str(error)) from None
    instants = [parse_instant(text) for text in arguments.at] if arguments.at else [utc_now()]
    rows = []
    for instant in instants:
        change = spec.next_change(instant)
        rows.append({
            "at": instant.isoformat(),
            "active": spec.matches(instant),
            "next_change": _in_zone_of(change, instant).isoformat() if change else None,
        })
    if arguments.json:
        print_json({"spec": arguments.spec, "instants": rows})
    else:
        for row in rows:
            state = "inside" if row["active"] else "outside"
            after = f"; changes at {row['next_change']}" if row["next_change"] else "; never changes"
            print_line(f"{row['at']}: {state}{after}")
    return EXIT_OK


def _in_zone_of(change: datetime, instant: datetime) -> datetime:
    """Given a UTC instant, return it in the zone of ``instant``; in UTC when that local time is past year 9999."""
    try:
        return change.astimezone(instant.tzinfo)
    except OverflowError:
        return change


def deployments(arguments: argparse.Namespace) -> int:
    from daemon.operations import list_all_deployments, manual_deployment_action

    settings = load_config(arguments.config).settings
    if arguments.deployments_command == "list":
        rows = list_all_deployments(settings, utc_now())
        if arguments.json:
            print_json(rows)
        else:
            from daemon.render_status import print_deployments
            print_deployments(rows)
        return _listing_exit_code(rows)
    result = manual_deployment_action(settings, arguments.deployments_command, arguments.name, arguments.provider)
    return _after_acting(EXIT_ACTIONS_FAILED if result.failed else EXIT_OK, lambda: _print_outcomes(result, arguments.json))


def _print_outcomes(result: RunResult, as_json: bool) -> None:
    if as_json:
        print_json(result.to_dict())
        return
    for action_result in result.results:
        error = f": {action_result.error}" if action_result.error else ""
        print_line(f"{action_result.action.action} {action_result.action.provider}/{action_result.action.name}: "
                   f"{action_result.outcome}{error}")


def restore(arguments: argparse.Namespace) -> int:
    from daemon.operations import restore_version, split_tag
    from policies.durations import format_bytes
    from policies.model import format_instant

    settings = load_config(arguments.config).settings
    name, version = split_tag(arguments.tag)
    outcome: dict[str, Any] = {"action": "restore", "kind": arguments.kind, "name": name, "version": version}
    try:
        restored = restore_version(settings, arguments.tag, arguments.kind)
    except RestoreError as error:
        if arguments.json:
            print_json({**outcome, "outcome": "failed", "error": str(error)})
        raise
    if arguments.json:
        print_json({**outcome, "kind": restored.kind, "size_bytes": restored.size_bytes,
                    "trashed_at": format_instant(restored.trashed_at), "outcome": "ok", "error": None})
    else:
        print_line(f"restored {restored.kind} {restored.name}:{restored.version} (trashed {format_instant(restored.trashed_at)}, "
                   f"{format_bytes(restored.size_bytes)})")
    return EXIT_OK


def check_config(arguments: argparse.Namespace) -> int:
    from daemon.mounts import access_time_warnings

    loaded = load_config(arguments.config)
    source = str(loaded.path) if loaded.path else "built-in defaults (no config file found)"
    print_line(f"# config: {source} -- valid", sys.stderr)
    from daemon.surprises import config_surprises

    surprises = [*loaded.settings.unscheduled_warnings().values(),
                 *(warning for _, warning in config_surprises(loaded.settings, utc_now()))]
    for warning in surprises:
        print_line(f"retentiond: warning: {warning}", sys.stderr)
    for warning in access_time_warnings(loaded.settings.store.home, loaded.settings.policies):
        print_line(f"retentiond: warning: {warning}", sys.stderr)
    effective = loaded.settings.model_dump(mode="json")
    if arguments.json:
        print(json.dumps(effective, indent=2))
    else:
        from daemon.config_toml import to_toml
        sys.stdout.write(to_toml(effective))
    return EXIT_OK


def audit(arguments: argparse.Namespace) -> int:
    from daemon.audit import chain_files, read_chain, record_time

    settings = load_config(arguments.config).settings
    if arguments.audit_command == "verify":
        return _verify_audit(settings.daemon.audit_log, arguments.json)
    since = _parse_since(arguments.since) if arguments.since else None
    path = settings.daemon.audit_log
    if not chain_files(path):
        print_line(f"retentiond: no audit log at {path} yet", sys.stderr)
        return EXIT_OK
    records = [
        record for record in read_chain(path)
        if (arguments.policy is None or record.get("policy") == arguments.policy)
        and (since is None or (record_time(record) or since) >= since)
    ]
    if arguments.json:
        for record in records:
            print(json.dumps(record, separators=(",", ":")))
    else:
        from daemon.render_audit import print_audit
        print_audit(records)
    return EXIT_OK


def _verify_audit(path: Path, as_json: bool) -> int:
    from daemon.audit import verify_chain

    report = verify_chain(path)
    if as_json:
        print_json({
            "files": [str(file) for file in report.files], "records": report.records,
            "intact": report.problem is None, "problem": report.problem, "note": report.note,
        })
    elif report.problem is None:
        print_line(f"audit log intact: {report.records} records in {len(report.files)} file(s)"
                   + (f" ({report.note})" if report.note else ""))
    else:
        print_line(f"audit log NOT intact after {report.records} good records: {report.problem}", sys.stderr)
    return EXIT_OK if report.problem is None else EXIT_ACTIONS_FAILED


def _parse_since(text: str) -> datetime:
    from policies.durations import Duration

    try:
        return Duration.parse(text).before(utc_now(), timezone.utc)
    except ValueError:
        pass
    try:
        return parse_instant(text if "T" in text or " " in text else f"{text}T00:00:00Z", "--since")
    except UsageError:
        raise UsageError(f"invalid --since {text!r}; expected a duration (2d, 6h) or an ISO 8601 instant") from None
