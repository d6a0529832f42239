"""Start-up is most of a small `plan` or `apply`: the commands must not import what they do not use.

rich (~100 ms with pygments and attrs) only for human output, httpx only for a BentoCloud provider,
apscheduler only for `run` or a `schedule` to check. Each command runs in a fresh interpreter, so
what it imported is exactly what `sys.modules` holds afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.imports import HEAVY, imported_by


@pytest.mark.usefixtures("five_versions")
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_json_commands_import_no_rich_httpx_or_apscheduler(command: str, write_config: Callable[..., Path]) -> None:
    code, heavy, output = imported_by(command, "--config", str(write_config()), "--json")
    assert code == 0
    assert heavy == []
    assert json.loads(output)["actions"]  # the run did real work: three versions to delete


def test_check_config_imports_neither_these_nor_the_store(write_config: Callable[..., Path]) -> None:
    # The store's own imports (filelock, PyYAML for the scanner) are for commands that touch the store.
    code, heavy, _ = imported_by("check-config", "--config", str(write_config()), watched=(*HEAVY, "filelock", "yaml"))
    assert (code, heavy) == (0, [])


@pytest.mark.usefixtures("five_versions")
def test_human_plan_still_renders_with_rich(write_config: Callable[..., Path]) -> None:
    code, heavy, output = imported_by("plan", "--config", str(write_config()))
    assert code == 0
    assert "rich" in heavy
    assert "model iris" in output


def test_a_schedule_is_still_checked_with_apscheduler(write_config: Callable[..., Path]) -> None:
    config = write_config('[[retention]]\nname = "ci"\nkeep_last = 2\nschedule = "0 61 * * *"\n')
    code, heavy, _ = imported_by("check-config", "--config", str(config))
    assert code == 78
    assert "apscheduler" in heavy
