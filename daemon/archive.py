"""``store.archive_dir``: before a version is deleted, write it as an archive BentoML can import.

The archive is a gzip-compressed tar of the version directory's contents, named
``<name>-<version>.tar.gz`` (BentoML's own ``bentoml models export`` writes the same
layout, xz-compressed, as ``.bentomodel``); ``bentoml models import FILE`` takes it
back. It is written to a temp file and renamed into place, so an archive that
exists is complete. Symlinks inside a version are stored as links, never followed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def archive_name(kind: str, name: str, version: str) -> str:
    return f"{name}-{version}.tar.gz" if kind == "model" else f"{name}-{version}.bento.tar.gz"


def archive_version(version_dir: Path, archive_dir: Path, kind: str, name: str, version: str) -> Path:
    """Given a version directory, write its archive into ``archive_dir`` and return the archive's path.

    Raise OSError if it cannot be written completely; then nothing is left behind.
    """
    import tarfile  # only when store.archive_dir is set: every `apply` imports this module

    archive_dir.mkdir(parents=True, exist_ok=True)
    destination = archive_dir / archive_name(kind, name, version)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=archive_dir)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w:gz") as archive:
                archive.add(version_dir, arcname=".", recursive=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, destination)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return destination
