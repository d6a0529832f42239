"""Writing and removing files safely: the ground floor every module that changes a file uses.

``write_file_atomically`` writes a temp file in the same directory, fsyncs it and ``os.replace``s
it (pip's ``adjacent_tmp_file``); ``remove_tree`` removes what it can without following
symlinks and reports, never raises, what it cannot. Imports nothing of ours.
"""

from __future__ import annotations

import bisect
import errno
import os
import shutil
import stat
import sys
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - every supported Linux has it
    raise ImportError("retentiond needs a shutil.rmtree that resists symlink attacks")

@dataclass(frozen=True)
class RemovalFailure:
    """One path that remove_tree could not remove, with the system's reason (``Operation not permitted``)."""

    path: str
    error: str

    def describe(self) -> str:
        return f"cannot remove {self.path}: {self.error}"


def remove_tree(path: Path) -> list[RemovalFailure]:
    """Given a file or a directory tree, remove as much of it as can be removed, never following symlinks.

    A read-only sub-directory of our own does not stop it. Return what could not be removed (the paths
    that refused, not the directories left non-empty because of them); an empty list when all of it went.
    Never raise for an OSError: a trash entry that cannot be purged is reported and skipped, never fatal.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return []
    except OSError as error:
        return [RemovalFailure(str(path), _reason(error))]
    if not stat.S_ISDIR(info.st_mode):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as error:
            return [RemovalFailure(str(path), _reason(error))]
        return []
    errors = _rmtree_collecting(path)
    if any(isinstance(error, PermissionError) for _, error in errors):
        # A user's read-only sub-directory must not stop the purge of what is already trash.
        _make_owner_writable(path)
        errors = _rmtree_collecting(path)
    return _root_causes(errors)


def _rmtree_collecting(path: Path) -> list[tuple[str, OSError]]:
    errors: list[tuple[str, OSError]] = []

    def collect(failed_path: str | Path, error: BaseException) -> None:
        # Gone already (another process, or NFS finishing a silly-rename) is what we wanted.
        if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
            errors.append((os.fspath(failed_path), error))
        elif not isinstance(error, OSError):
            raise error

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=lambda _function, failed, error: collect(failed, error))
    else:
        shutil.rmtree(path, onerror=lambda _function, failed, info: collect(failed, info[1]))
    return errors


def _root_causes(errors: list[tuple[str, OSError]]) -> list[RemovalFailure]:
    # A directory that is not empty because something in it refused is a consequence, not a cause.
    failed = sorted(failed_path for failed_path, _ in errors)
    causes = []
    for failed_path, error in errors:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            below = failed_path.rstrip(os.sep) + os.sep
            index = bisect.bisect_left(failed, below)
            if index < len(failed) and failed[index].startswith(below):
                continue
        causes.append(RemovalFailure(failed_path, _reason(error)))
    return causes


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _make_owner_writable(root: Path) -> None:
    # Directories of another owner stay as they are (chmod is refused); what is below them is reported.
    for directory, subdirs, _ in os.walk(root, followlinks=False):
        for subdir in subdirs:
            child = os.path.join(directory, subdir)
            if not os.path.islink(child):
                with suppress(OSError):
                    os.chmod(child, stat.S_IRWXU)
        with suppress(OSError):
            os.chmod(directory, stat.S_IRWXU)


def write_file_atomically(path: Path, content: bytes, mode: int = 0o644) -> None:
    """Write ``content`` to ``path`` via a temp file in the same directory, fsync and ``os.replace``; the file
    gets ``mode`` (0o600 for one only its owner may read)."""
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp_name)
        raise
