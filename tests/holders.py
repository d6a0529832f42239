"""Real processes that hold a path the ways a model server does: an open file, a memory map whose
descriptor is closed, a working directory. Each is a Python child that says "ready" once it holds
the path and exits when its stdin closes (so it never outlives a failed test)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

# Python's mmap module keeps a duplicate of the descriptor open; libc's mmap does not, as a model loader
# that closes the file after mapping it. The child checks that no descriptor of it refers to the file.
HOLD = """
import ctypes, os, sys
mode, path = sys.argv[1], sys.argv[2]
if mode == "open":
    handle = open(path, "rb")
elif mode == "mmap":
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    descriptor = os.open(path, os.O_RDONLY)
    address = libc.mmap(None, os.fstat(descriptor).st_size, 1, 1, descriptor, 0)  # PROT_READ, MAP_SHARED
    os.close(descriptor)
    if address in (None, ctypes.c_void_p(-1).value):
        sys.exit("mmap failed")
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.path.samefile(f"/proc/self/fd/{name}", path):
                sys.exit("a descriptor still refers to the mapped file")
        except OSError:
            pass
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
