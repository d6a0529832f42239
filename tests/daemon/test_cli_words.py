"""`status` and `audit show` in words: no Python dicts, no None, each record saying what it is about."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.errors import EXIT_OK

HOOK = """
import json, sys
if sys.argv[1] == "list":
    print(json.dumps([{"name": "staging-a", "status": "running"}]))
"""


def test_status_says_in_words_what_blocked_an_unreachable_disk_target(
    five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config('[[disk]]\nname = "budget"\nmax_store_size = "1B"\n')
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    capsys.readouterr()
    assert main(["status", "--config", str(config)]) == EXIT_OK
    human = " ".join(capsys.readouterr().out.split())
    assert "budget: store budget max_store_size 1B (over it now); last evaluated " in human
    assert ": target not reachable, needed " in human and "blocked by latest (" in human
    assert "{" not in human and "None" not in human


def test_audit_show_names_what_a_restore_and_a_hand_terminate_acted_on(
    five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(hook))}"
    config = write_config(
        '[[retention]]\nname = "ci"\nkeep_last = 2\n'
        f'[providers.hooks]\ntype = "command"\nlist = "{command} list"\n'
        f'terminate = "{command} terminate {{name}}"\nrestart = "{command} restart {{name}}"\n'
    )
    config.write_text(config.read_text().replace("[daemon]", 'trash_retention = "7d"\n[daemon]', 1))
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    assert main(["restore", "iris:v4", "--config", str(config)]) == EXIT_OK
    assert main(["deployments", "terminate", "staging-a", "--config", str(config)]) == EXIT_OK
    capsys.readouterr()
    assert main(["audit", "show", "--config", str(config)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    restored = next(line for line in lines if " artifact.restored " in line)
    assert "model iris:v4, " in restored and ", ok; trashed at " in restored
    intent = next(line for line in lines if " artifact.restore_intended " in line)
    assert "manual: iris:v4" in intent
    terminated = next(line for line in lines if " deployment.terminated " in line)
    assert terminated.endswith("manual: deployment hooks/staging-a, ok")
    assert "why: terminate requested by hand" in next(line for line in lines if "deployment.terminate_intended" in line)
    finished = [line for line in lines if " run.finished " in line]
    assert finished[-2].split()[1:] == ["run.finished", "1", "restored"]
    assert finished[-1].endswith("1 ok, 0 failed")
    assert not [line for line in lines if "None" in line]
