"""The BentoML store's layout (REFERENCE.md §1) and retentiond's place in it: the ground floor.

``models/<name>/<version>/model.yaml`` and ``models/<name>/latest`` (a plain file holding the
version), the same for ``bentos/`` with ``bento.yaml``; retentiond's lock and trash live in
``<home>/.retentiond/``. Every module may import this one; it imports nothing of ours but the
pure core's types.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from policies.model import ArtifactKind

KIND_DIRS: dict[ArtifactKind, tuple[str, str]] = {
    "model": ("models", "model.yaml"),
    "bento": ("bentos", "bento.yaml"),
}


STATE_DIR_NAME = ".retentiond"


def read_latest(name_dir: Path | str) -> str | None:
    """Given ``models/<name>``, return what its ``latest`` file names, or None if absent or not a plain file."""
    try:
        fd = os.open(os.path.join(name_dir, "latest"), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 4096).decode("utf-8", "replace").strip() or None
    finally:
        os.close(fd)


def stat_identity(info: os.stat_result) -> tuple[int, int, int]:
    """Return (device, inode, mtime_ns): a version directory is this very one, unchanged."""
    return (info.st_dev, info.st_ino, info.st_mtime_ns)


TRASHED_AT_FILE = "trashed_at"
