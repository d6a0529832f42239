"""Real processes that hold a path the ways a model server does: an open file, a memory map whose
descriptor is closed, a working directory. Each is a Python child that says "ready" once it holds
the path and exits when its stdin closes (so it never outlives a failed test)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

HOLD = """
import mmap, os, sys
mode, path = sys.argv[1], sys.argv[2]
if mode == "open":
    handle = open(path, "rb")
elif mode == "mmap":
    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    del handle
elif mode == "cwd":
    os.chdir(path)
print("ready", flush=True)
sys.stdin.read()
"""


def start_holder(mode: str, path: Path, as_user: Sequence[str] = ()) -> subprocess.Popen[str]:
    """Start a process that holds ``path`` by ``mode`` ("open", "mmap", "cwd"); return once it does.

    ``as_user`` prefixes the command (e.g. setpriv to run it as another user; setpriv execs, so the pid is the holder's).
    """
    child = subprocess.Popen(
        [*as_user, sys.executable, "-c", HOLD, mode, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "ready":
        child.kill()
        raise RuntimeError(f"holder did not start: {line!r}, exit {child.wait(10)}")
    return child


def release(child: subprocess.Popen[str]) -> None:
    """Let the holder exit and wait for it."""
    if child.stdin is not None and not child.stdin.closed:
        child.stdin.close()
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(10)


@contextmanager
def holding(mode: str, path: Path, as_user: Sequence[str] = ()) -> Iterator[subprocess.Popen[str]]:
    """Hold ``path`` by ``mode`` for the block."""
    child = start_holder(mode, path, as_user)
    try:
        yield child
    finally:
        release(child)
