"""The real CLI prints labels, policy names, provider errors and paths literally, and keeps its exit code.

A BentoML label is free text: "[/keep]" used to crash `plan` and `apply` (apply after deleting) with
rich's MarkupError and "[wip]" vanished. Here the commands run as subprocesses on a store whose labels,
policy name, provider error and home path carry markup, emoji codes and terminal escape sequences.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shlex
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.audit import read_records
from daemon.cli import main
from daemon.errors import EXIT_ACTIONS_FAILED, EXIT_CONFIG, EXIT_OK
from daemon.literal import visible
from tests.daemon.conftest import NOW
from tests.fakestore import add_model, make_home

LABELS = {
    "v0": "[/keep]",
    "v1": "[wip]",
    "v2": "\x1b[31mred\x1b[0m [bold red]x[/] [link=file:///etc/passwd]y[/link] :smile: [ \x1b]0;pwned\x07",
}
POLICY = "ci [wip] [/keep] :smile: \x1b[2J"
HOOK_ERROR = "[/keep] \x1b[2J boom :smile: [bold]"
# Raw bytes a user text would have to smuggle through to steer a terminal; none may reach the output.
INJECTED = (b"\x1b[31mred", b"\x1b[2J", b"\x1b]0;pwned")

HOOK = """
import json, sys
if sys.argv[1] == "list":
    print(json.dumps([{"name": "staging-a", "status": "running", "labels": {"note": "[/keep]"}}]))
else:
    sys.stderr.write(HOOK_ERROR + "\\n")
    sys.exit(3)
"""


def toml_string(text: str) -> str:
    return json.dumps(text)  # JSON's escapes (\\uXXXX, \\", \\\\) are TOML basic-string escapes too


def labelled_store(home: Path, labels_of: dict[str, str] = LABELS) -> None:
    """iris v0..v3, newest first; those named in ``labels_of`` carry that hostile `note` label."""
    for day, version in enumerate(("v0", "v1", "v2", "v3")):
        labels = {"note": labels_of[version]} if version in labels_of else None
        add_model(home, "iris", version, NOW - timedelta(days=day + 1), labels=labels)


def retention(policy: str = POLICY) -> str:
    return f'[[retention]]\nname = {toml_string(policy)}\nkeep_last = 1\nkeep_labels = {{ note = "*" }}\n'


def failing_provider(tmp_path: Path) -> str:
    hook = tmp_path / "hook.py"
    hook.write_text(f"HOOK_ERROR = {HOOK_ERROR!r}\n{HOOK}")
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(hook))}"
    return (
        f'[providers.hooks]\ntype = "command"\nlist = {toml_string(command + " list")}\n'
        f'terminate = {toml_string(command + " terminate {name}")}\nrestart = {toml_string(command + " restart {name}")}\n'
        f'[[offhours]]\nname = {toml_string(POLICY + " nights")}\nprovider = "hooks"\ndowntime = "always"\ngrace_period = "0s"\n'
    )


def environment(**extra: str) -> dict[str, str]:
    # FORCE_COLOR and TTY_COMPATIBLE ask rich for colour on any stream: off a terminal it must not obey.
    return {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", **extra}


def cli(*arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "daemon", *arguments], capture_output=True, env=environment(), timeout=120)


def assert_printed_literally(result: subprocess.CompletedProcess[bytes], *texts: str) -> str:
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    assert b"\x1b" not in result.stdout and b"\x1b" not in result.stderr
    output = result.stdout.decode()
    missing = [text for text in texts if visible(text) not in output]
    assert missing == [], output
    return output


def test_hostile_labels_and_policy_name_print_literally_in_plan_apply_status_and_audit(
    home: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    labelled_store(home)
    config = str(write_config(retention()))
    kept = [f"label note={label}" for label in LABELS.values()]

    plan = cli("plan", "--config", config)
    assert plan.returncode == EXIT_OK
    assert_printed_literally(plan, f"model iris (policy {POLICY})", *kept, "not kept by any rule", "1 version(s) to delete")

    applied = cli("apply", "--config", config)
    assert applied.returncode == EXIT_OK
    assert_printed_literally(applied, *kept, "delete: ok", "done: 1 ok, 0 failed, 0 skipped")
    assert sorted(path.name for path in (home / "models" / "iris").iterdir() if path.is_dir()) == ["v0", "v1", "v2"]

    status = cli("status", "--config", config)
    assert status.returncode == EXIT_OK
    assert_printed_literally(status, POLICY, "3 versions")

    audit = cli("audit", "show", "--config", config)
    assert audit.returncode == EXIT_OK
    assert_printed_literally(audit, POLICY, "model iris:v3")
    assert any(record.get("policy") == POLICY for record in read_records(tmp_path / "log" / "audit.jsonl"))


def test_provider_error_with_markup_prints_literally_and_apply_exits_1(
    home: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = str(write_config(failing_provider(tmp_path)))

    listing = cli("deployments", "list", "--config", config)
    assert listing.returncode == EXIT_OK
    assert_printed_literally(listing, "staging-a", POLICY, "terminate")

    applied = cli("apply", "--config", config)
    assert applied.returncode == EXIT_ACTIONS_FAILED
    assert_printed_literally(applied, "staging-a  hooks     terminate: failed", HOOK_ERROR, "done: 0 ok, 1 failed")

    manual = cli("deployments", "terminate", "staging-a", "--config", config)
    assert manual.returncode == EXIT_ACTIONS_FAILED
    assert_printed_literally(manual, "terminate hooks/staging-a: failed: ", HOOK_ERROR)

    audit = cli("audit", "show", "--config", config)
    assert audit.returncode == EXIT_OK
    assert_printed_literally(audit, POLICY, HOOK_ERROR)


@pytest.mark.parametrize(("command", "provider", "expected"), [
    ("plan", False, EXIT_OK),
    ("apply", False, EXIT_OK),
    ("apply", True, EXIT_ACTIONS_FAILED),
    ("deployments terminate staging-a", True, EXIT_ACTIONS_FAILED),
])
def test_a_closed_stdout_keeps_the_exit_code_of_what_the_command_did(
    command: str, provider: bool, expected: int, home: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    labelled_store(home)
    config = write_config(retention() + (failing_provider(tmp_path) if provider else ""))
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first byte: every write fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "daemon", *command.split(), "--config", str(config)],
                                stdout=writer, stderr=subprocess.PIPE, env=environment(), timeout=120)
    finally:
        os.close(writer)
    assert result.returncode == expected, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize(("fail_one", "expected"), [(False, EXIT_OK), (True, EXIT_ACTIONS_FAILED)])
def test_a_renderer_fault_after_acting_keeps_the_exit_code_and_the_audit_log(
    fail_one: bool, expected: int, home: Path, write_config: Callable[..., Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    labelled_store(home)
    add_model(home, "iris", "v4", NOW - timedelta(days=9))
    from daemon import render

    def broken_renderer(result: object, *_: object) -> None:
        raise RuntimeError("[/keep] a renderer bug")

    monkeypatch.setattr(render, "print_run", broken_renderer)
    if fail_one:
        real_rename = os.rename

        def refuse_v4(source: object, destination: object) -> None:
            if str(source).endswith("/v4"):
                raise PermissionError(13, "Permission denied")
            real_rename(source, destination)  # type: ignore[arg-type]

        monkeypatch.setattr("daemon.store.os.rename", refuse_v4)

    assert main(["apply", "--config", str(write_config(retention()))]) == expected
    assert "the result could not be shown (RuntimeError: [/keep] a renderer bug)" in capsys.readouterr().err
    events = [record["event"] for record in read_records(tmp_path / "log" / "audit.jsonl")]
    assert events[-1] == "run.finished" and "artifact.deleted" in events
    assert not (home / "models" / "iris" / "v3").exists()


def run_in_terminal(arguments: list[str], columns: int = 400, timeout_seconds: float = 60) -> tuple[int, bytes]:
    """Run the CLI with stdin, stdout and stderr on a new pseudo-terminal; return its exit code and all it wrote."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "daemon", *arguments], stdin=terminal, stdout=terminal, stderr=terminal,
                               env=environment(TERM="xterm-256color"), close_fds=True)
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + timeout_seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed its end of the terminal
                break
            if not chunk:
                break
            output += chunk
        return process.wait(timeout=10), output
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()


def test_on_a_terminal_escape_sequences_in_labels_and_paths_are_shown_not_sent(tmp_path: Path) -> None:
    root = tmp_path / "st\x1b[2Jore"
    root.mkdir()
    home = make_home(root)
    # Only escape sequences and markup that rich could parse: the old code got this far and sent them raw.
    labelled_store(home, {"v0": LABELS["v2"]})
    config = tmp_path / "config.toml"
    config.write_text(
        f"[store]\nhome = {toml_string(str(home))}\n"
        f"[daemon]\nstate_dir = {toml_string(str(tmp_path / 'state'))}\naudit_log = {toml_string(str(tmp_path / 'audit.jsonl'))}\n"
        + retention("ci")
    )
    for command in ("plan", "apply", "status"):
        code, output = run_in_terminal([command, "--config", str(config)])
        assert code == EXIT_OK, output
        assert b"\x1b[" in output  # rich's own colours: this really was a terminal
        assert [injected for injected in INJECTED if injected in output] == []
        assert visible("\x1b[31mred\x1b[0m [bold red]x[/]").encode() in output or command == "status"
        assert visible(str(home)).encode() in output.replace(b"\r\n", b"") or command == "plan"
        assert b"Traceback" not in output


def test_config_path_and_config_errors_print_literally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "con\x1b[2Jfig\t[wip] :smile:"
    directory.mkdir()
    config = directory / "retentiond.toml"
    config.write_text(retention())
    assert main(["check-config", "--config", str(config)]) == EXIT_OK
    error = capsys.readouterr().err
    assert f"# config: {visible(str(config))} -- valid" in error and "\x1b" not in error

    assert main(["check-config", "--config", str(directory / "missing.toml")]) == EXIT_CONFIG
    error = capsys.readouterr().err
    assert visible(str(directory / "missing.toml")) in error and "\x1b" not in error
    assert error.count("\n") == 1


def test_a_label_the_output_encoding_cannot_hold_is_escaped_not_a_traceback(
    home: Path, write_config: Callable[..., Path]
) -> None:
    labelled_store(home, {"v0": "café 😀"})
    result = subprocess.run([sys.executable, "-m", "daemon", "plan", "--config", str(write_config(retention("ci")))],
                            capture_output=True, env=environment(PYTHONIOENCODING="ascii"), timeout=120)
    assert result.returncode == EXIT_OK, result.stderr.decode(errors="replace")
    assert b"label note=caf\\xe9 \\U0001f600" in result.stdout
