"""Every renderer of daemon.render prints user text literally: no markup, no emoji codes, no escape sequences.

Each public renderer has a case below that puts one text into every user-text field it shows (labels
via keep reasons, policy names, deployment names, statuses and reasons, audit fields and errors,
status fields, warnings), each behind a prefix naming the field. The test then asserts that every
field appears, made visible by daemon.literal.visible, in the output, and that no raw control
character does: off a terminal none at all, on one only rich's own colour codes. A renderer added
to daemon.render without a case here fails test_every_public_renderer_has_a_hostile_case.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import render, render_audit, render_status
from daemon.executor import ActionResult, RunResult
from daemon.literal import visible
from daemon.render_table import Column
from policies.model import Action, Artifact, Inventory, Kept, Plan

AT = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)

HOSTILE = (
    "[/keep]", "[wip]", "[bold red]x[/]", "[link=file:///etc/passwd]x[/link]", "[", "]", "[/]", "\\[escaped]",
    ":smile:", ":cross_mark: done", "\x1b[31mred\x1b[0m", "\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "\x9b2J", "\x00nul",
    "line one\nline two", "cr\roverwrite", "tab\there", "\u202eevil", "zero\u200bwidth", "next\u2028line", "\udcff",
    "x" * 5000, "[b]" * 300, "😀 [i]emoji[/i]", "{task.fields[item]} %s {0}", "",
)

# Markup, emoji codes and escape sequences in pieces, glued to arbitrary text by the strategy below.
PIECES = ("[", "]", "[/", "[/keep]", "[wip]", "[bold]", "[/]", "[link=x]", ":", ":smile:", "\\", "\x1b", "\x1b[", "\x9b",
          "\n", "\r", "\t", "\u202e", "\x07", "m", "31")
hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=8).map("".join),
)

# Shown: the strings that must appear (each passed through visible) in what a call prints.
Case = tuple[Callable[[], None], list[str]]


def plan_case(text: str, outcomes: bool = False) -> tuple[Plan, Inventory, list[str]]:
    """A plan with one deleted and one kept version of a hostile name, and a terminated deployment."""
    name, deleted, kept, policy = f"name:{text}", f"deleted:{text}", f"kept:{text}", f"policy:{text}"
    artifacts = tuple(
        Artifact("model", name, version, AT, AT, 10, labels={"note": text}) for version in (deleted, kept)
    )
    plan = Plan(
        at=AT,
        actions=(
            Action("delete", "model", name, deleted, policy, (f"reason:{text}",), size_bytes=10),
            Action("terminate", "deployment", f"deployment:{text}", None, policy, (f"downtime:{text}",), provider=f"provider:{text}"),
        ),
        kept=(Kept("model", name, kept, policy, (f"label note={text}", "last 1")),),
        warnings=(f"warning:{text}",),
    )
    # One policy decided the name: it is named in the title, and its reasons go without it.
    shown = [f"model {name} (policy {policy})", deleted, kept, f"reason:{text}", f"label note={text}", "last 1",
             f"deployment:{text}", f"provider:{text}", f"{policy}: downtime:{text}", f"warning: warning:{text}"]
    return plan, Inventory(artifacts=artifacts), shown


def print_plan_case(text: str) -> Case:
    plan, inventory, shown = plan_case(text)
    return lambda: render.print_plan(plan, inventory), shown


def print_run_case(text: str) -> Case:
    plan, inventory, shown = plan_case(text)
    delete, terminate = plan.actions
    result = RunResult(f"run:{text}", plan, inventory, [
        ActionResult(delete, "failed", f"error:{text}"), ActionResult(terminate, "skipped", f"skip:{text}"),
    ])
    return lambda: render.print_run(result), [*shown, "delete: failed", f"failed: error:{text}", "terminate: skipped",
                                              f"skipped: skip:{text}"]


def print_plan_summary_case(text: str) -> Case:
    plan, inventory, _ = plan_case(text)
    name, policy = f"name:{text}", f"policy:{text}"
    return lambda: render.print_plan_summary(plan, inventory), [policy, name, f"warning: warning:{text}"]


def print_table_case(text: str) -> Case:
    columns = (Column("A"), Column("B", right=True), Column("C", detail=True))
    rows = [(f"a:{text}", f"b:{text}", [f"c:{text}", f"d:{text}"])]
    return lambda: render.print_table(render.console(), columns, rows), [f"a:{text}", f"b:{text}", f"c:{text}", f"d:{text}"]


def print_paragraph_case(text: str) -> Case:
    return lambda: render.print_paragraph(render.console(), f"paragraph:{text}", indent=2, style="yellow"), [f"paragraph:{text}"]


def print_audit_case(text: str) -> Case:
    fields = ("ts", "run_id", "event", "policy", "kind", "name", "version", "outcome", "error")
    record: dict[str, Any] = {field: f"{field}:{text}" for field in fields}
    record["size_bytes"] = 10
    record["reasons"] = [f"why:{text}"]
    record["extra_field"] = f"extra:{text}"
    intent = {**record, "event": f"{record['event']}_intended"}
    shown = [record["ts"], f"run {record['run_id']}", *(record[field] for field in ("event", "policy", "outcome")),
             f"error: {record['error']}", f"{record['kind']} {record['name']}:{record['version']}", f"why: why:{text}",
             f"extra field extra:{text}"]
    return lambda: render_audit.print_audit([record, intent, {"event": f"bare:{text}", "policy": None}]), [*shown, f"bare:{text}"]


def deployment_rows(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    row = {field: f"{field}:{text}" for field in ("provider", "name", "status", "owner", "policy", "now", "next_window_change")}
    row["reasons"] = [f"reason:{text}", f"more:{text}"]
    error_row = {"provider": None, "name": None, "status": "error", "reasons": [f"provider error:{text}"]}
    fixed = [row[field] for field in ("provider", "name", "status", "now", "next_window_change")]
    return [row, error_row], [*fixed, f"owner: owner:{text}", f"policy policy:{text}", f"reason:{text}", f"more:{text}",
                              f"error: provider error:{text}"]


def print_deployments_case(text: str) -> Case:
    rows, shown = deployment_rows(text)
    return lambda: render_status.print_deployments(rows), shown


def print_status_case(text: str) -> Case:
    rows, deployments_shown = deployment_rows(text)
    report = {
        "store": {
            "home": f"home:{text}", "versions": 1, "size_bytes": 10, "warnings": [f"store warning:{text}"],
            "names": [{"kind": "model", "name": f"name:{text}", "versions": 1, "size_bytes": 10,
                       "oldest": f"oldest:{text}", "newest": f"newest:{text}"}],
        },
        "disk": {
            "total_bytes": 100, "used_bytes": 50, "used_ratio": 0.5,
            "policies": [{"name": f"disk:{text}", "high_watermark": {"setting": f"high:{text}"},
                          "last_evaluation": {"at": f"evaluated:{text}", "triggers": [f"trigger:{text}"], "reached": False,
                                              "needed_bytes": 20, "planned_bytes": 10, "blocked_by": {f"blocked:{text}": 10}}}],
        },
        "trash": {"path": f"trash:{text}", "versions": 0, "size_bytes": 0,
                  "stuck": {"entries": 1, "size_bytes": 10, "first_error": f"stuck:{text}", "paths": [f"path:{text}"],
                            "checked_at": None}},
        "policies": [
            {"name": f"retention:{text}", "kind": "retention", "next_run": f"next:{text}", "check_interval": None,
             "last_run": {"at": f"at:{text}", "outcome": f"outcome:{text}", "actions_ok": 1, "bytes_freed": 10}},
            {"name": f"idle:{text}", "kind": "disk", "next_run": None, "check_interval": f"interval:{text}", "last_run": None},
        ],
        "deployments": rows,
        "backup": {"provider": f"provider:{text}", "source": "last run", "at": f"at:{text}", "held_back_versions": 2,
                   "held_back_bytes": 10, "by_reason": {f"reason:{text}": 2}, "registry_error": f"error:{text}"},
    }
    shown = [f"store home:{text}: 1 version", f"name:{text}", f"oldest:{text}", f"newest:{text}",
             f"warning: store warning:{text}", f"disk:{text}: evicts above high_watermark high:{text}",
             f"backup: require_pushed provider:{text} (last run at:{text}): 2 versions, 10 B held back "
             f"(reason:{text} 2); registry error: error:{text}",
             f"last evaluated evaluated:{text}: target not reachable", f"blocked by blocked:{text} (10 B)",
             f"first: stuck:{text}", f"retention:{text} (retention): last run at:{text}: outcome:{text}", f"next run next:{text}",
             f"idle:{text} (disk): never run", f"checks the disk every interval:{text}",
             *deployments_shown]
    return lambda: render_status.print_status(report), shown


CASES: dict[str, Callable[[str], Case]] = {
    "print_plan": print_plan_case,
    "print_plan_summary": print_plan_summary_case,
    "print_table": print_table_case,
    "print_paragraph": print_paragraph_case,
    "print_run": print_run_case,
    "print_audit": print_audit_case,
    "print_status": print_status_case,
    "print_deployments": print_deployments_case,
}
# Public names of daemon.render that are not renderers of a report, and the test that attacks them.
COVERED_ELSEWHERE = {"console": "every case above", "ProgressBar": "test_progress_bar_shows_the_item_literally"}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def captured(terminal: bool) -> Iterator[io.StringIO]:
    """Capture stdout as a terminal (wide, colours on) or as a pipe that asks rich for colour anyway."""
    if terminal:
        environment = {"TERM": "xterm-256color", "COLUMNS": "100000", "LINES": "50"}
        stream: io.StringIO = FakeTerminal()
    else:
        # FORCE_COLOR and TTY_COMPATIBLE make rich treat any stream as a terminal unless told otherwise.
        environment = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TERM": "xterm-256color"}
        stream = io.StringIO()
    with mock.patch.dict(os.environ, environment), contextlib.redirect_stdout(stream):
        os.environ.pop("NO_COLOR", None)
        yield stream


# rich's own output on a terminal: colours, cursor moves and erasing for the live progress bar.
RICH_CONTROL = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\d*[ABCDGK]|\x1b\[2K|\x1b\[\?25[lh]|\r")
ESCAPED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def assert_literal(output: str, shown: list[str], terminal: bool) -> None:
    if terminal:
        assert "\x1b[" in output, "the fake terminal got no colour at all, so this proves nothing"
        output = RICH_CONTROL.sub("", output)
    raw = sorted({repr(ch) for ch in output if ch != "\n" and unicodedata.category(ch) in ESCAPED_CATEGORIES})
    assert raw == [], f"raw control or format characters in the output: {raw}"
    # A line never ends in spaces, so a value's own trailing spaces may go with them (they showed nothing anyway).
    missing = [value for value in shown if visible(value).rstrip() not in output]
    assert missing == [], f"not shown literally: {[visible(value)[:80] for value in missing]}"


RENDERERS = (render, render_status, render_audit)


def test_every_public_renderer_has_a_hostile_case() -> None:
    public = {
        name for module in RENDERERS for name, value in vars(module).items()
        if not name.startswith("_") and callable(value) and getattr(value, "__module__", None) == module.__name__
    }
    assert public - set(COVERED_ELSEWHERE) == set(CASES)


def test_only_render_uses_rich_and_only_through_its_literal_console() -> None:
    """A string handed to rich any other way (a second Console, Text built from a value, a markup column)
    would bypass the console's render_str, so nothing else may."""
    daemon_dir = Path(render.__file__).parent
    importers = []
    for path in sorted(daemon_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(module == "rich" or module.startswith("rich.") for module in modules):
                importers.append(path.name)
    assert sorted(set(importers)) == ["render.py"]
    bypasses = [
        ast.unparse(node) for module in RENDERERS for node in ast.walk(ast.parse(Path(module.__file__ or "").read_text()))
        if isinstance(node, ast.Call) and (
            (isinstance(node.func, ast.Name) and node.func.id in {"Console", "Text", "TextColumn", "render_markup"})
            or (isinstance(node.func, ast.Attribute) and node.func.attr in {"from_markup", "from_ansi", "assemble"})
        )
    ]
    assert bypasses == []


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
@pytest.mark.parametrize("renderer", sorted(CASES))
@pytest.mark.parametrize("text", HOSTILE, ids=lambda text: repr(text[:24]))
def test_known_hostile_text_prints_literally_in_every_field(renderer: str, text: str, terminal: bool) -> None:
    call, shown = CASES[renderer](text)
    with captured(terminal) as stream:
        call()
    assert_literal(stream.getvalue(), shown, terminal)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=hostile_text, renderer=st.sampled_from(sorted(CASES)), terminal=st.booleans())
def test_any_text_prints_literally_in_every_renderer(text: str, renderer: str, terminal: bool) -> None:
    call, shown = CASES[renderer](text)
    with captured(terminal) as stream:
        call()
    assert_literal(stream.getvalue(), shown, terminal)


@pytest.mark.parametrize("text", ["[/keep]", "\x1b]0;pwned\x07 [wip] :smile:", "a\nb"])
def test_progress_bar_shows_the_item_literally(text: str) -> None:
    plan, _, _ = plan_case(text)
    delete = plan.actions[0]
    with captured(terminal=True) as stream:
        bar = render.ProgressBar()
        bar.begin(plan)
        bar.advance(ActionResult(delete, "ok"))
        bar.stop()
    assert_literal(stream.getvalue(), [f"{delete.name}:{delete.version}"], terminal=True)


def test_off_a_terminal_nothing_wraps_or_is_cut() -> None:
    long_name = "n" * 3000
    call, _ = print_deployments_case(long_name)
    with captured(terminal=False) as stream:
        call()
    assert f"name:{long_name}" in stream.getvalue().splitlines()[1]
    assert "…" not in stream.getvalue()


@pytest.mark.parametrize(("text", "shown"), [
    ("plain [wip] :smile: é 😀", "plain [wip] :smile: é 😀"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("a\nb\rc\td", "a\\nb\\rc\\td"),
    ("\x9b2J\x7f", "\\x9b2J\\x7f"),
    ("\u202eevil\u2028", "\\u202eevil\\u2028"),
    ("file\udcff", "file\\udcff"),
    ("\U000e0001tag", "\\U000e0001tag"),
])
def test_visible_escapes_exactly_what_could_steer_a_terminal(text: str, shown: str) -> None:
    assert visible(text) == shown
