"""Off a terminal a long `apply` says every few seconds how far it got; a short one says nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from daemon import progress
from daemon.cli import main
from daemon.errors import EXIT_OK
from daemon.executor import ActionResult
from daemon.progress import ProgressLines
from policies.durations import format_bytes
from policies.model import Action, Plan

AT = datetime(2026, 11, 22, tzinfo=timezone.utc)


def deletion(version: str) -> Action:
    return Action("delete", "model", "iris", version, "ci", ("not kept by any rule",), size_bytes=1024**3)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress_lines(stderr: str) -> list[dict[str, object]]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [record for record in records if record["event"] == "run.progress"]


def test_a_line_every_interval_with_versions_done_and_bytes_freed(capsys: pytest.CaptureFixture[str]) -> None:
    from daemon import logs

    logs.configure()
    clock = Clock()
    lines = ProgressLines(interval=5, clock=clock)
    actions = tuple(deletion(f"v{number}") for number in range(4))
    lines.begin(Plan(AT, actions=(*actions, Action("terminate", "deployment", "web", None, "nights", (), provider="cloud"))))
    lines.advance(ActionResult(actions[0], "ok"))
    clock.now += 4.9
    lines.advance(ActionResult(actions[1], "failed", "no"))
    assert progress_lines(capsys.readouterr().err) == []  # the run has not taken 5 s yet
    clock.now += 0.2
    lines.advance(ActionResult(actions[2], "ok"))
    clock.now += 1
    lines.advance(ActionResult(actions[3], "ok"))
    shown = progress_lines(capsys.readouterr().err)
    assert [line["progress"] for line in shown] == ["deleting: 3/4 versions, 2.0 GiB freed; 0/1 deployment actions"]
    assert shown[0]["versions_done"] == 3 and shown[0]["bytes_freed"] == 2 * 1024**3


def test_apply_off_a_terminal_logs_progress_lines_when_it_takes_long_enough(
    five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.0)  # every deletion "takes" the whole interval
    assert main(["apply", "--config", str(write_config()), "--json"]) == EXIT_OK
    captured = capsys.readouterr()
    actions = json.loads(captured.out)["actions"]  # stdout stays the one JSON object
    freed = [sum(action["disk_bytes"] for action in actions[:count]) for count in (1, 2, 3)]
    assert [line["progress"] for line in progress_lines(captured.err)] == [
        f"deleting: {count}/3 versions, {format_bytes(bytes_freed)} freed" for count, bytes_freed in zip((1, 2, 3), freed)]


def test_a_short_apply_logs_no_progress(
    five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", "--config", str(write_config())]) == EXIT_OK
    assert progress_lines(capsys.readouterr().err) == []
