"""The fault injector: run ``retentiond`` with an audit hook that SIGKILLs (or freezes) it just before
its N-th filesystem mutation, and the environment every child of the crash trials gets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The program that runs `retentiond apply` in-process with a fault injector. An audit hook sees
# every filesystem mutation just before it happens; at the CRASH_AT_OP-th one the process SIGKILLs
# (or, with CRASH_SIGNAL=STOP, freezes) itself. Counting starts at the first mutation under
# CRASH_ROOT, so interpreter start-up (bytecode caches) does not count; with CRASH_AT_EVENT (e.g.
# os.rename) only that event counts, with CRASH_MATCH only events on a path containing it. With
# CRASH_AT_OP=0 it only counts and writes the total to CRASH_COUNT_FILE.
KILLER = r"""
import os, signal, sys
_target = int(os.environ.get("CRASH_AT_OP", "0"))
_root = os.environ["CRASH_ROOT"]
_stop = os.environ.get("CRASH_SIGNAL") == "STOP"
_count_file = os.environ.get("CRASH_COUNT_FILE")
_only_event = os.environ.get("CRASH_AT_EVENT")
_match = os.environ.get("CRASH_MATCH")
_writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_mutating = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.chmod", "os.utime", "os.truncate",
             "os.symlink", "os.link", "shutil.rmtree", "fcntl.flock"}
_state = {"armed": False, "count": 0}

def _touches(args, part):
    for value in args[:2]:
        try:
            if part in os.fsdecode(value):
                return True
        except TypeError:
            pass
    return False

def _hook(event, args):
    if event == "open":
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        if not flags & _writes:
            return
    elif event not in _mutating:
        return
    if not _state["armed"]:
        if not _touches(args, _root):
            return
        _state["armed"] = True
    if (_only_event and event != _only_event) or (_match and not _touches(args, _match)):
        return
    _state["count"] += 1
    if _state["count"] == _target:
        os.kill(os.getpid(), signal.SIGSTOP if _stop else signal.SIGKILL)

sys.addaudithook(_hook)
from daemon.cli import main
_code = main(sys.argv[1:])
_counted = _state["count"]
_target = -1
if _count_file:
    with open(_count_file, "w") as _handle:
        _handle.write(str(_counted))
sys.exit(_code)
"""



def child_environment(home: Path, **extra: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RETENTIOND_")}
    environment.pop("NOTIFY_SOCKET", None)
    environment.update(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="True", PYTHONPATH=str(REPO), **extra)
    return environment


def start_injected(arguments: list[str], home: Path, root: Path, at_op: int, **extra: str) -> subprocess.Popen[bytes]:
    """Start ``retentiond ARGUMENTS`` with the fault injector: it dies (or freezes) before mutation ``at_op``."""
    environment = child_environment(home, CRASH_AT_OP=str(at_op), CRASH_ROOT=str(root), **extra)
    return subprocess.Popen(
        [sys.executable, "-c", KILLER, *arguments],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment, cwd=REPO,
    )

