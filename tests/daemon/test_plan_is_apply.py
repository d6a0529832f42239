"""``plan --json`` is ``apply`` without the execution: the same actions, refusals, totals and exit code.

Each scenario runs ``plan --json`` and then ``apply --json`` on the same store at (almost) the same
instant and compares them, action by action (apply's outcome fields aside). Disk pressure is played
on a tmpfs of its own, so that the bytes in use are the test's alone.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.cli import main
from tests.cloud_server import CloudServer
from tests.daemon.conftest import NOW
from tests.fakestore import add_model, make_home

MIB = 1024 * 1024
OUTCOME_FIELDS = ("outcome", "error")


def run_json(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict[str, Any]]:
    code = main([*arguments, "--json"])
    return code, json.loads(capsys.readouterr().out)


def decisions(document: dict[str, Any]) -> dict[str, Any]:
    """What plan and apply must agree on: the actions (without outcomes), refusals and totals."""
    actions = [{key: value for key, value in action.items() if key not in OUTCOME_FIELDS} for action in document["actions"]]
    return {"actions": actions, "refusals": document["refusals"], "totals": document["totals"]}


def plan_then_apply(capsys: pytest.CaptureFixture[str], config: Path, *options: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run plan, then apply, on the same store; assert they agree; return both documents."""
    plan_code, planned = run_json(capsys, "plan", "--config", str(config), *options)
    apply_code, applied = run_json(capsys, "apply", "--config", str(config), *options)
    assert decisions(planned) == decisions(applied)
    assert plan_code == apply_code
    return planned, applied


def versions(home: Path, name: str = "iris") -> set[str]:
    name_dir = home / "models" / name
    return {entry.name for entry in name_dir.iterdir() if entry.is_dir()} if name_dir.is_dir() else set()


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs for the store: its used bytes are this test's alone."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_retention_plan_is_what_apply_does(
    five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    planned, applied = plan_then_apply(capsys, write_config())
    assert [action["version"] for action in planned["actions"]] == ["v4", "v3", "v2"]
    assert [action["outcome"] for action in applied["actions"]] == ["ok", "ok", "ok"]


@pytest.mark.parametrize(
    ("high", "low", "left"),
    [
        ("12MiB", "11MiB", {f"v{day}" for day in range(5)}),  # purging the trash is enough: nothing evicted
        ("8MiB", "7MiB", {"v0", "v1", "v2"}),  # purging is not enough: the oldest go too
    ],
)
def test_disk_pressure_with_a_full_trash_plans_the_purge_before_evictions(
    small_filesystem: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], high: str, low: str, left: set[str]
) -> None:
    home = make_home(small_filesystem)
    for day in range(8):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1), files=2, file_bytes=MIB)
    config = tmp_path / "config.toml"
    base = (
        f'[store]\nhome = "{home}"\ntrash_retention = "30d"\n'
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
        '[[retention]]\nname = "ci"\nkeep_last = 5\n'
    )
    config.write_text(base)
    assert main(["apply", "--config", str(config)]) == 0  # v5..v7 wait in the trash: 6 MiB that still count as used
    capsys.readouterr()
    config.write_text(base + f'[[disk]]\nname = "pressure"\nhigh_watermark = "{high}"\nlow_watermark = "{low}"\nmin_age = "0s"\n')

    planned, applied = plan_then_apply(capsys, config, "--policy", "pressure")
    assert any(warning.startswith("disk pressure: the trash is purged first") for warning in planned["warnings"])
    assert versions(home) == left
    assert list((home / ".retentiond" / "trash").iterdir()) == []
    assert len(applied["actions"]) == 5 - len(left)


def test_a_shrunken_store_is_refused_by_plan_as_by_apply(
    home: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for day in range(20):
        add_model(home, "iris", f"v{day:02d}", NOW - timedelta(days=day + 1))
    config = write_config('[[retention]]\nname = "ci"\nkeep_last = 15\n')
    config.write_text(config.read_text().replace("[daemon]\n", 'max_shrink = "50%"\n[daemon]\n', 1))
    assert main(["apply", "--config", str(config)]) == 0  # the store as it should be: 15 versions
    for day in range(3, 15):  # an unmounted volume, a half-synced copy...
        for path in sorted((home / "models" / "iris" / f"v{day:02d}").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (home / "models" / "iris" / f"v{day:02d}").rmdir()
    capsys.readouterr()
    for _ in range(2):  # the refusal does not record the shrunken count: the next run refuses again
        planned, applied = plan_then_apply(capsys, config)
        assert planned["actions"] == [] and [r["policy"] for r in planned["refusals"]] == [None]
        assert "the last run saw 15" in planned["refusals"][0]["reason"]
        assert main(["plan", "--config", str(config)]) == 1
        assert "retentiond: refused: store.max_shrink" in capsys.readouterr().err


def test_blast_radius_is_refused_by_plan_as_by_apply(
    home: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for day in range(8):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1))
    planned, _ = plan_then_apply(capsys, write_config('[[retention]]\nname = "ci"\nkeep_last = 2\nmax_delete_per_run = 5\n'))
    assert planned["refusals"] == [
        {"policy": "ci", "reason": "6 versions exceed max_delete_per_run 5; nothing of policy ci is deleted this run"}
    ]
    assert planned["totals"]["delete"] == 0 and len(versions(home)) == 8


@pytest.fixture
def cloud() -> Iterator[CloudServer]:
    with CloudServer(token="secret-token") as server:
        server.add_deployment("staging-a")
        server.add_deployment("prod-api")
        yield server


def test_off_hours_plan_is_what_apply_does(
    home: Path, write_config: Callable[..., Path], cloud: CloudServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        f'[providers.cloud]\ntype = "bentocloud"\nendpoint = "{cloud.url}"\napi_token = "secret-token"\n'
        '[[offhours]]\nname = "nights"\nprovider = "cloud"\nmatch = ["staging-*"]\ndowntime = "always"\ngrace_period = "0s"\n'
    )
    planned, applied = plan_then_apply(capsys, config)
    assert [(a["action"], a["name"]) for a in planned["actions"]] == [("terminate", "staging-a")]
    assert planned["totals"]["terminate"] == 1 and applied["actions"][0]["outcome"] == "ok"
    plan_then_apply(capsys, config)  # terminated now: nothing more to do, in both


def test_a_provider_that_cannot_list_is_refused_by_plan_as_by_apply(
    home: Path, write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = tmp_path / "list.sh"
    failing.write_text("#!/bin/sh\necho 'cluster unreachable' >&2\nexit 3\n")
    failing.chmod(0o755)
    config = write_config(
        f'[providers.hooks]\ntype = "command"\nlist = "{failing}"\nterminate = "true {{name}}"\nrestart = "true {{name}}"\n'
        '[[offhours]]\nname = "nights"\nprovider = "hooks"\ndowntime = "always"\n'
    )
    planned, _ = plan_then_apply(capsys, config)
    assert [refusal["policy"] for refusal in planned["refusals"]] == ["nights"]
    assert "provider hooks could not list its deployments" in planned["refusals"][0]["reason"]
    assert main(["apply", "--config", str(config)]) == 1
