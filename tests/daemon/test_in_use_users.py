"""retentiond as an unprivileged user (as the shipped systemd unit runs it): processes of other users
cannot be read. They are counted once per run; a file they hold is still caught by the lease probe
right before deletion; a version another non-root user could enter is kept (fail closed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.fakestore import add_model, make_home
from tests.holders import holding

NOBODY = 65534
OTHER = 65533
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")


def as_user(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A store owned by nobody, in a directory other users may pass through (pytest's own is root's, 0700)."""
    root = Path(tempfile.mkdtemp(prefix="retentiond-users-", dir="/tmp"))
    root.chmod(0o755)
    home = make_home(root)
    now = datetime.now(timezone.utc)
    for day in range(5):
        add_model(home, "iris", f"v{day}", now - timedelta(days=day + 1))
    (root / "config.toml").write_text(
        f'[store]\nhome = "{home}"\n[daemon]\nstate_dir = "{root / "state"}"\naudit_log = "{root / "log" / "audit.jsonl"}"\n'
        '[[retention]]\nname = "ci"\nkeep_last = 2\n'
    )
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(root)], check=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run_as_nobody(command: str, root: Path, prefix: Sequence[str] = ()) -> tuple[dict, list[str]]:
    """Run a command as nobody; return its JSON report and the in-use warnings it logged."""
    finished = subprocess.run(
        [*prefix, *as_user(NOBODY), sys.executable, "-m", "daemon", command, "--config", str(root / "config.toml"), "--json"],
        capture_output=True, text=True, timeout=120, cwd="/",
    )
    assert finished.returncode == 0, finished.stderr
    events = [json.loads(line) for line in finished.stderr.splitlines() if line.startswith("{")]
    return json.loads(finished.stdout), [event["detail"] for event in events if event["event"] == "inuse.unreadable"]


def unreadable_warnings(logged: list[str]) -> list[str]:
    return [warning for warning in logged if " cannot be read (" in warning]


def test_processes_of_root_are_counted_once_and_do_not_stop_deletions(shared: Path) -> None:
    report, logged = run_as_nobody("plan", shared)
    assert {action["version"] for action in report["actions"]} == {"v2", "v3", "v4"}
    [warning] = unreadable_warnings(logged)
    assert " of root" in warning and warning.endswith("; run retentiond as root to read every process")


def test_a_file_a_root_process_holds_is_caught_right_before_deletion(shared: Path) -> None:
    held = shared / "bentoml" / "models" / "iris" / "v3"
    with holding("mmap", held / "weights-0.bin"):
        report, _ = run_as_nobody("apply", shared)
    outcomes = {action["version"]: (action["outcome"], action["error"]) for action in report["actions"]}
    assert outcomes["v2"] == ("ok", None) and outcomes["v4"] == ("ok", None)
    assert outcomes["v3"] == ("skipped", "in use by a process this user cannot read (weights-0.bin is open or mapped)")
    assert held.is_dir()


def test_a_version_another_user_may_enter_is_kept_while_that_user_cannot_be_read(shared: Path) -> None:
    # BentoML makes version directories 0700; this one was opened up, so uid 65533 may stand in it.
    versions = shared / "bentoml" / "models" / "iris"
    (versions / "v3").chmod(0o755)
    with holding("cwd", versions / "v3", as_user(OTHER)) as child:
        report, logged = run_as_nobody("plan", shared)
    assert {action["version"] for action in report["actions"]} == {"v2", "v4"}, "0700 versions: uid 65533 cannot be in them"
    [reason] = [reason for kept in report["kept"] if kept["version"] == "v3" for reason in kept["reasons"]]
    assert reason.startswith(f"in use by pid {child.pid} (")
    assert reason.endswith(f" of uid {OTHER}, which cannot be read and may enter this version")
    [warning] = unreadable_warnings(logged)
    assert " of other users" in warning


def test_in_the_units_sandbox_our_own_holders_are_named_and_the_hidden_ones_still_caught(shared: Path) -> None:
    # What systemd/retentiond.service sets up: a /proc of its own with hidepid=invisible (ProtectProc=invisible,
    # ProcSubset=pid) and a non-root user. Only that user's processes are visible.
    sandbox = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t proc -o hidepid=invisible,subset=pid proc /proc && exec "$@"', "sandbox"]
    versions = shared / "bentoml" / "models" / "iris"
    with holding("mmap", versions / "v3" / "weights-0.bin", as_user(NOBODY)) as ours, holding("open", versions / "v2" / "weights-1.bin"):
        report, logged = run_as_nobody("apply", shared, sandbox)
    outcomes = {action["version"]: (action["outcome"], action["error"]) for action in report["actions"]}
    assert outcomes == {
        "v2": ("skipped", "in use by a process this user cannot read (weights-1.bin is open or mapped)"),
        "v4": ("ok", None),
    }
    [reason] = [reason for kept in report["kept"] if kept["version"] == "v3" for reason in kept["reasons"]]
    assert reason.startswith(f"in use by pid {ours.pid} (")
    assert any("hides other users' processes from this user (hidepid=invisible)" in warning for warning in logged)
    assert unreadable_warnings(logged) == [], "hidden processes are not listed, so they are not counted"
