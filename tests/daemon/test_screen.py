"""The commands as a person sees them: in a real 80-column terminal (tmux), and piped into another program.

The store is the demo store (tests/fakestore.py) with a long model name, a bento, a trash to restore from,
and three deployments of a command provider. `apply`, `restore`, `deployments terminate|restart` fill the
audit log first, so that `audit show` has deletions, a restore and deployment actions to show.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.fakestore import add_bento, add_model, write_demo

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed; .ci/run installs it")

WIDTH = 80
EXIT_MARK = "retentiond-test-exit-code="
LONG_NAME = "a-rather-long-model-name-for-an-eighty-column-terminal"
STAMP = re.compile(r"\d{4}-\d\d-\d\dT")
WHOLE_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
HOOK = """
import json, pathlib, sys
state = pathlib.Path(__file__).with_name("deployments.json")
data = json.loads(state.read_text()) if state.exists() else {
    "staging-a": "running", "staging-batch-nightly-import": "running", "prod-web": "running"}
if sys.argv[1] == "list":
    print(json.dumps([{"name": name, "status": status} for name, status in data.items()]))
else:
    data[sys.argv[2]] = "terminated" if sys.argv[1] == "terminate" else "running"
    state.write_text(json.dumps(data))
"""


def environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("RETENTIOND_")} | {
        "BENTOML_DO_NOT_TRACK": "True", "TERM": "xterm-256color"}


def cli(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *arguments, "--config", str(config)],
                          capture_output=True, text=True, env=environment(), timeout=120)


def on_screen(config: Path, tmp_path: Path, *arguments: str) -> list[str]:
    """Run the command in a detached 80×50 tmux terminal of its own; return every line it showed (wrapped lines joined)."""
    socket = f"retentiond-test-{os.getpid()}-{time.monotonic_ns()}"
    settings = tmp_path / "tmux.conf"
    settings.write_text("set -g remain-on-exit on\nset -g history-limit 20000\n")
    command = shlex.join([sys.executable, "-m", "daemon", *arguments, "--config", str(config)])
    tmux = ["tmux", "-L", socket, "-f", str(settings)]
    # The exit code is printed after the command (tmux 3.3 leaves #{pane_dead_status} empty) and checked below.
    # Log lines (stderr) go to a file: they are the logger's, not the command's output (e.g. the in-use check's
    # warning about processes it cannot read, on a host where even root cannot read PID 1).
    shell = f"{command} 2>>{shlex.quote(str(tmp_path / 'screen-stderr.log'))}; echo {EXIT_MARK}$?"
    subprocess.run([*tmux, "new-session", "-d", "-x", str(WIDTH), "-y", "50", "-s", "screen", "-c", os.getcwd(), shell],
                   check=True, env=environment(), timeout=30)
    try:
        deadline = time.monotonic() + 120
        while True:
            state = subprocess.run([*tmux, "list-panes", "-t", "screen", "-F", "#{pane_dead} #{pane_width}"],
                                   capture_output=True, text=True, check=True, timeout=30).stdout.split()
            if state[0] == "1" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert state == ["1", str(WIDTH)], state
        # -J joins the lines the terminal wrapped, so a line wider than the screen shows up as one long line.
        screen = subprocess.run([*tmux, "capture-pane", "-p", "-J", "-t", "screen", "-S", "-", "-E", "-"],
                                capture_output=True, text=True, check=True, timeout=30).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=30)
    lines = screen.rstrip("\n").split("\n")
    while lines and not lines[-1].startswith(EXIT_MARK):
        lines.pop()
    assert lines and lines.pop() == f"{EXIT_MARK}0", screen
    return lines


def assert_readable(lines: list[str], piped: bool = False) -> None:
    """Nothing past the edge, no trailing spaces, no escape codes, every timestamp whole on one line."""
    assert lines, "nothing was shown"
    if not piped:
        assert [line for line in lines if len(line) > WIDTH] == []  # the demo store's output is ASCII
    assert [line for line in lines if line != line.rstrip()] == []
    assert [line for line in lines if "\x1b" in line] == []
    for line in lines:
        assert len(STAMP.findall(line)) == len(WHOLE_STAMP.findall(line)), f"a timestamp is cut: {line!r}"
    text = "\n".join(lines)
    assert "None" not in text and "{'" not in text and "┃" not in text


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("screen")
    config = write_demo(root)
    home = root / "bentoml"
    now = datetime.now(timezone.utc)
    for day in range(3):
        add_model(home, LONG_NAME, f"v{day}", now - timedelta(days=day + 1))
    add_bento(home, "svc", "b1", now - timedelta(days=2), [f"{LONG_NAME}:v2"])
    hook = root / "hook.py"
    hook.write_text(HOOK)
    python = shlex.quote(sys.executable)
    text = config.read_text().replace('[daemon]', 'trash_retention = "7d"\n\n[daemon]')
    config.write_text(
        text + 'keep_within = "1d"\n\n[[disk]]\nname = "budget"\nmax_store_size = "1GiB"\n\n'
        f'[providers.hooks]\ntype = "command"\nlist = "{python} {hook} list"\n'
        f'terminate = "{python} {hook} terminate {{name}}"\nrestart = "{python} {hook} restart {{name}}"\n\n'
        '[[offhours]]\nname = "nights"\nprovider = "hooks"\nmatch = ["staging-*"]\ndowntime = "always"\ngrace_period = "0s"\n'
    )
    yield root, config


def store_versions(root: Path) -> list[str]:
    return sorted(path.name for path in (root / "bentoml" / "models").glob("*/*") if path.is_dir())


def test_plan_at_80_columns_and_piped_shows_every_version_timestamp_and_reason_whole(demo: tuple[Path, Path]) -> None:
    root, config = demo
    screen = on_screen(config, root, "plan")
    assert_readable(screen)
    text = "\n".join(screen)
    assert [version for version in store_versions(root) if version not in text] == []
    assert "not kept by any rule" in text and "daily " in text and "latest" in text and "referenced by bento svc:b1" in text
    assert f"model {LONG_NAME} (policy ci-models)" in text
    assert "staging-batch-nightly-import" in text and "nights: downtime always" in text

    piped = cli(config, "plan")
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert_readable(lines, piped=True)
    # Piped, each version is one line: its id, creation time, decision and every reason.
    rows = [line for line in lines if line.split(" ")[0] in store_versions(root)]
    assert len(rows) == len(store_versions(root))
    assert all(WHOLE_STAMP.search(row) and re.search(r"\b(keep|delete)\b", row) for row in rows)


def test_plan_summary_is_one_line_per_policy_and_name_then_the_totals(demo: tuple[Path, Path]) -> None:
    root, config = demo
    screen = on_screen(config, root, "plan", "--summary")
    assert_readable(screen)
    assert screen[0].split() == ["POLICY", "KIND", "DELETE", "KEEP", "TO", "FREE", "NAME"]
    # The long name folds in its own column, the last; the figures stay in theirs.
    assert re.fullmatch(r"ci-models\s+model\s+0\s+3\s+0 B  (.+)", screen[1])
    assert "".join(line.strip() for line in screen[1:3]).endswith(LONG_NAME)
    for line, name in zip(screen[3:6], ("model-0000", "model-0001", "model-0002")):
        assert re.fullmatch(rf"ci-models\s+model\s+30\s+10\s+[\d.]+ KiB  {name}", line)
    assert any(line.split()[:2] == ["nights", "hooks"] for line in screen)
    assert re.match(r"\d+ version\(s\) to delete", screen[-1]) or re.match(r"\d+ version\(s\) to delete", screen[-2])
    piped = cli(config, "plan", "--summary")
    assert piped.returncode == 0
    lines = piped.stdout.splitlines()
    assert_readable(lines, piped=True)
    assert lines[1].endswith(f"0 B  {LONG_NAME}") and lines[2:5] == screen[3:6]


def test_status_audit_and_deployments_at_80_columns_after_runs_a_restore_and_hand_actions(demo: tuple[Path, Path]) -> None:
    root, config = demo
    assert cli(config, "apply").returncode == 0
    audit = [json.loads(line) for line in (root / "audit.jsonl").read_text().splitlines()]
    deleted = next(record for record in audit if record["event"] == "artifact.deleted")
    restored = cli(config, "restore", f"{deleted['name']}:{deleted['version']}")
    assert restored.returncode == 0, restored.stderr
    assert cli(config, "deployments", "terminate", "prod-web").returncode == 0
    assert cli(config, "deployments", "restart", "staging-a").returncode == 0

    status = on_screen(config, root, "status")
    assert_readable(status)
    text = "\n".join(status)
    assert "model-0000" in text and LONG_NAME in text and "ci-models (retention): last run " in text
    assert "budget (disk): last run" in text and "nights (offhours): last run" in text
    assert "staging-batch-nightly-import" in text and "owner: manual" in text

    shown = "\n".join(on_screen(config, root, "audit", "show"))
    assert_readable(shown.split("\n"))
    assert "artifact.restored" in shown and f"{deleted['name']}:{deleted['version']}" in shown
    assert "deployment hooks/prod-web, ok" in shown and "why: terminate requested by hand" in shown
    assert re.search(r"run.finished\s*\n?\s*\d+ ok, 0 failed", shown)

    listing = on_screen(config, root, "deployments", "list")
    assert_readable(listing)
    assert [line.split()[:3] for line in listing if line.startswith(("staging", "prod"))] == [
        ["staging-a", "hooks", "running"], ["staging-batch-nightly-import", "hooks", "terminated"],
        ["prod-web", "hooks", "terminated"],
    ]
    for command in (["status"], ["audit", "show"], ["deployments", "list"]):
        piped = cli(config, *command)
        assert piped.returncode == 0, piped.stderr
        assert_readable(piped.stdout.splitlines(), piped=True)


def test_the_readme_shows_summary_and_status_as_they_look_at_80_columns(demo: tuple[Path, Path]) -> None:
    root, config = demo
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = {block.split("\n", 1)[0]: block.split("\n")[1:] for block in re.findall(r"```text\n(\$ retentiond .*?)```", readme, re.S)}
    summary = next(lines for command, lines in blocks.items() if command.startswith("$ retentiond plan --summary"))
    status = next(lines for command, lines in blocks.items() if command.startswith("$ retentiond status"))
    for lines in (summary, status):
        assert [line for line in lines if len(line) > WIDTH or line != line.rstrip()] == []
    assert summary[0].split() == on_screen(config, root, "plan", "--summary")[0].split()
    assert re.fullmatch(r"\d+ version\(s\) to delete, .* to free; \d+ kept\. \(at \S+Z\)", [line for line in summary if line][-1])
    readme_header = next(line for line in status if line.startswith("NAME")).split()
    screen_header = next(line for line in on_screen(config, root, "status") if line.startswith("NAME")).split()
    assert readme_header == ["NAME", "VERSIONS", "ON", "DISK", "OLDEST", "NEWEST"]
    assert screen_header == readme_header[:4]  # the demo's long name moves OLDEST and NEWEST under each row
    assert any(line.startswith("  ci-models (retention): last run ") for line in status)
