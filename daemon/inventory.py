"""Read the BentoML store into an ``Inventory``, touching nothing.

Layout (REFERENCE.md §1): ``models/<name>/<version>/model.yaml``, ``models/<name>/latest``
(a plain file holding the version), the same for ``bentos/`` with ``bento.yaml``.
Symlinks are never followed. Whatever is not a complete, valid store entry becomes
an artifact with a ``problem`` (never deleted) or a warning.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from policies.model import Artifact, ArtifactKind, Inventory

TAG_PATTERN = re.compile(r"^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$")
TAG_MAX_LENGTH = 63
KIND_DIRS: dict[ArtifactKind, tuple[str, str]] = {
    "model": ("models", "model.yaml"),
    "bento": ("bentos", "bento.yaml"),
}
STATE_DIR_NAME = ".retentiond"
# BentoML writes a few hundred bytes; anything huge is not its work and is not parsed.
METADATA_MAX_BYTES = 1024 * 1024


def is_valid_tag_part(text: str) -> bool:
    """Return True when ``text`` is a valid BentoML name or version."""
    return len(text) <= TAG_MAX_LENGTH and TAG_PATTERN.match(text) is not None


@dataclass(frozen=True)
class _Walk:
    size_bytes: int
    newest_mtime: float
    identity: tuple[int, int, int]
    problem: str | None = None


def scan_store(home: Path) -> Inventory:
    """Given a BentoML home, return every model and bento version in it, with warnings.

    Raise OSError only if the ``models``/``bentos`` directories exist but cannot be listed.
    """
    artifacts: list[Artifact] = []
    warnings: list[str] = []
    for kind, (subdir, _) in KIND_DIRS.items():
        kind_root = home / subdir
        if not kind_root.is_dir():
            continue
        for name_entry in _sorted_entries(kind_root):
            if name_entry.is_symlink():
                warnings.append(f"{subdir}/{name_entry.name} is a symlink; not followed, never deleted")
                continue
            if name_entry.is_dir(follow_symlinks=False):
                artifacts.extend(_scan_name(kind, Path(name_entry.path), warnings))
    return Inventory(artifacts=tuple(artifacts), warnings=tuple(warnings))


def store_fingerprint(home: Path) -> tuple[tuple[str, int], ...]:
    """Return the mtimes of ``models/``, ``bentos/`` and every name directory: a new or removed
    version changes it. Costs one stat per name, not a walk."""
    marks: list[tuple[str, int]] = []
    for subdir, _ in KIND_DIRS.values():
        kind_root = home / subdir
        try:
            marks.append((subdir, kind_root.lstat().st_mtime_ns))
            with os.scandir(kind_root) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        marks.append((f"{subdir}/{entry.name}", entry.stat(follow_symlinks=False).st_mtime_ns))
        except OSError:
            marks.append((subdir, -1))
    return tuple(sorted(marks))


def _sorted_entries(directory: Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as entries:
        return sorted(entries, key=lambda entry: entry.name)


def read_latest(name_dir: Path) -> str | None:
    """Given ``models/<name>``, return what its ``latest`` file names, or None if absent or not a plain file."""
    try:
        fd = os.open(name_dir / "latest", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 4096).decode("utf-8", "replace").strip() or None
    finally:
        os.close(fd)


def _scan_name(kind: ArtifactKind, name_dir: Path, warnings: list[str]) -> list[Artifact]:
    name = name_dir.name
    latest = read_latest(name_dir)
    artifacts = []
    try:
        entries = _sorted_entries(name_dir)
    except OSError as error:
        warnings.append(f"{kind} {name}: cannot list {name_dir}: {error.strerror}")
        return []
    for entry in entries:
        if entry.is_symlink():
            warnings.append(f"{kind} {name}:{entry.name} is a symlink; not followed, never deleted")
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        artifacts.append(read_version(kind, name, entry.name, Path(entry.path), latest))
    if latest is not None and not any(artifact.version == latest for artifact in artifacts):
        warnings.append(f"{kind} {name}: latest names {latest!r}, which does not exist")
    return artifacts


def read_version(kind: ArtifactKind, name: str, version: str, path: Path, latest: str | None) -> Artifact:
    """Given one version directory, return its Artifact; problems are recorded, never raised."""
    walk = _walk(path)
    metadata, problem = _read_metadata(path / KIND_DIRS[kind][1], name, version)
    problem = problem or walk.problem
    if not is_valid_tag_part(name):
        problem = f"invalid name {name!r}"
    elif not is_valid_tag_part(version):
        problem = f"invalid version {version!r}"
    created_at = metadata.get("created_at")
    labels = metadata.get("labels", {})
    return Artifact(
        kind=kind,
        name=name,
        version=version,
        created_at=created_at,
        modified_at=datetime.fromtimestamp(walk.newest_mtime, timezone.utc),
        size_bytes=walk.size_bytes,
        labels=labels,
        is_latest=latest == version,
        model_references=metadata.get("model_references", ()),
        problem=problem,
        identity=walk.identity,
    )


def _walk(root: Path) -> _Walk:
    """Sum the apparent size of regular files and find the newest mtime, without following links."""
    size_bytes = 0
    root_info = root.lstat()
    newest = root_info.st_mtime
    pending = [root]
    problem = None
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    info = entry.stat(follow_symlinks=False)
                    newest = max(newest, info.st_mtime)
                    if stat.S_ISDIR(info.st_mode):
                        pending.append(Path(entry.path))
                    elif stat.S_ISREG(info.st_mode):
                        size_bytes += info.st_size
        except OSError as error:
            problem = f"cannot read {directory}: {error.strerror}"
    return _Walk(size_bytes, newest, stat_identity(root_info), problem)


def stat_identity(info: os.stat_result) -> tuple[int, int, int]:
    """Return (device, inode, mtime_ns): a version directory is this very one, unchanged."""
    return (info.st_dev, info.st_ino, info.st_mtime_ns)


def _read_metadata(yaml_path: Path, name: str, version: str) -> tuple[dict[str, Any], str | None]:
    try:
        fd = os.open(yaml_path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}, f"no {yaml_path.name}"
    except OSError as error:
        return {}, f"cannot open {yaml_path.name}: {error.strerror or error}"
    with os.fdopen(fd, "rb") as handle:
        text = handle.read(METADATA_MAX_BYTES + 1)
    if len(text) > METADATA_MAX_BYTES:
        return {}, f"{yaml_path.name} is larger than {METADATA_MAX_BYTES} bytes"
    try:
        document = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as error:
        return {}, f"malformed {yaml_path.name}: {str(error).splitlines()[0]}"
    if not isinstance(document, dict):
        return {}, f"{yaml_path.name} is empty or not a mapping"
    return parse_metadata(document, yaml_path.name, name, version)


def parse_metadata(
    document: dict[str, Any], file_name: str, name: str, version: str
) -> tuple[dict[str, Any], str | None]:
    """Given a parsed model.yaml/bento.yaml, return (fields, problem or None)."""
    fields: dict[str, Any] = {"model_references": _model_references(document)}
    if document.get("name") != name or str(document.get("version")) != version:
        return fields, f"{file_name} names {document.get('name')}:{document.get('version')}, not its directory"
    labels = document.get("labels")
    if not isinstance(labels, dict):
        return fields, f"{file_name} has no labels mapping"
    fields["labels"] = {str(key): str(value) for key, value in labels.items()}
    created_at, problem = _creation_time(document.get("creation_time"), file_name)
    fields["created_at"] = created_at
    return fields, problem


def _creation_time(raw: Any, file_name: str) -> tuple[datetime | None, str | None]:
    if isinstance(raw, datetime):
        parsed = raw
    elif isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return None, f"{file_name} has an unreadable creation_time {raw!r}"
    else:
        return None, f"{file_name} has no creation_time"
    if parsed.tzinfo is None:
        return None, f"{file_name} has a creation_time without timezone ({raw})"
    return parsed.astimezone(timezone.utc), None


def _model_references(document: dict[str, Any]) -> tuple[str, ...]:
    entries: list[Any] = []
    if isinstance(document.get("models"), list):
        entries.extend(document["models"])
    for service in document.get("services") or ():
        if isinstance(service, dict) and isinstance(service.get("models"), list):
            entries.extend(service["models"])
    tags = []
    for entry in entries:
        tag = entry.get("tag") if isinstance(entry, dict) else entry
        if isinstance(tag, str) and ":" in tag:
            tags.append(tag)
    return tuple(dict.fromkeys(tags))
