"""Human output of ``audit show``: the records of each run under a line naming the run, each in words.

A record is whatever the log holds (a deletion, a restore, a deployment action, a run's counters, or a
record of a newer version with fields this one does not know), so every field is read defensively and
shown literally through :func:`daemon.render.console`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from daemon.render import console, print_paragraph, print_table
from daemon.render_table import Column
from policies.durations import format_bytes
from policies.model import format_instant

AUDIT_COLUMNS = (Column("TIME"), Column("EVENT"), Column("DETAILS", detail=True))
# Fields every record has, or that only the chain needs: not details.
_BOOKKEEPING = frozenset({"ts", "run_id", "event", "prev", "host", "pid", "level"})
# A run's counters in words; the optional ones only when not zero.
_COUNTERS = (("actions_ok", "ok", False), ("actions_failed", "failed", False), ("actions_skipped", "skipped", True),
             ("actions_not_started", "not started", True), ("restored", "restored", True))
# Details narrower than this go on lines of their own under the record: a tag cut in three reads badly.
MIN_DETAILS_WIDTH = 40


def print_audit(records: Iterable[dict[str, Any]]) -> None:
    """Print audit records, one table per run (records of a run are together: runs hold the store lock)."""
    out = console()
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    for record in records:
        run_id = str(record.get("run_id") or "-")
        if not runs or runs[-1][0] != run_id:
            runs.append((run_id, []))
        runs[-1][1].append(record)
    if not runs:
        out.print("no audit records match")
    for number, (run_id, run_records) in enumerate(runs):
        if number:
            out.print()
        first = run_records[0]
        where = f" on {first['host']}" if first.get("host") else ""
        print_paragraph(out, f"run {run_id}{where}")
        print_table(
            out, AUDIT_COLUMNS,
            [(_record_time(record), str(record.get("event") or "-"), _describe_record(record)) for record in run_records],
            [_style(record) for record in run_records], min_wrap=MIN_DETAILS_WIDTH,
        )


def _record_time(record: Mapping[str, Any]) -> str:
    """Return a record's time to the second, as every other instant is shown; the stored text if it is not one."""
    stamp = str(record.get("ts") or "-")
    try:
        return format_instant(datetime.fromisoformat(stamp.replace("Z", "+00:00")))
    except (ValueError, OverflowError, TypeError):
        return stamp


def _style(record: Mapping[str, Any]) -> str | None:
    if record.get("outcome") == "failed" or str(record.get("event", "")).endswith(("_failed", ".interrupted")):
        return "red"
    return None


def _describe_record(record: Mapping[str, Any]) -> list[str]:
    """Given an audit record, return what it says in words: its subject and outcome first, then the rest."""
    event = str(record.get("event") or "")
    used: set[str] = set(_BOOKKEEPING)
    items: list[str] = []
    subject = _subject(record, used)
    if subject:
        items.append(subject)
    if event.startswith("run."):
        counters = [
            f"{record[key]} {word}" for key, word, optional in _COUNTERS
            if isinstance(record.get(key), int) and (record[key] or not optional)
        ]
        used.update(key for key, _, _ in _COUNTERS)
        if isinstance(record.get("bytes_freed"), int) and record["bytes_freed"]:
            counters.append(f"{format_bytes(record['bytes_freed'])} freed")
        used.update({"bytes_freed", "actions_planned", "kept", "by_policy"})
        if counters:
            items.append(", ".join(counters))
    if record.get("error"):
        items.append(f"error: {record['error']}")
    used.add("error")
    # The reasons are those of the intent; its outcome record repeats them.
    if record.get("reasons") and isinstance(record["reasons"], list) and event.endswith("_intended"):
        items.append("why: " + "; ".join(str(reason) for reason in record["reasons"]))
    used.add("reasons")
    rest = [
        f"{_label(key)} {_instant(value) if key == 'at' or key.endswith('_at') else _value(value)}"
        for key, value in record.items() if key not in used and value not in (None, "", [], {})
    ]
    return items + rest


def _label(key: str) -> str:
    return "as of" if key == "at" else key.replace("_", " ")  # "at": the instant the run decided as of


def _instant(value: Any) -> str:
    """An instant as every other one is shown (to the second, UTC, Z); the stored text if it is not one."""
    return _record_time({"ts": value})


def _subject(record: Mapping[str, Any], used: set[str]) -> str:
    """Return "policy: what it acted on, size, outcome" for an action or restore record, else ""."""
    used.update({"policy", "kind", "name", "version", "provider", "size_bytes", "outcome", "action"})
    parts = []
    name = record.get("name")
    if name:
        if record.get("kind") == "deployment":
            provider = f"{record['provider']}/" if record.get("provider") else ""
            parts.append(f"deployment {provider}{name}")
        else:
            kind = f"{record['kind']} " if record.get("kind") else ""
            parts.append(f"{kind}{name}:{record.get('version') or '?'}")
    if isinstance(record.get("size_bytes"), int):
        parts.append(format_bytes(record["size_bytes"]))
    if record.get("outcome"):
        parts.append(str(record["outcome"]))
    text = ", ".join(parts)
    if record.get("policy") and (text or not str(record.get("event", "")).startswith("run.")):
        text = f"{record['policy']}: {text}" if text else f"policy {record['policy']}"
    return text


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_value(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key} {_value(item)}" for key, item in value.items())
    return str(value)
