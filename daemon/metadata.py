"""One version's metadata file (model.yaml / bento.yaml): read it, parse it, check it.

The fast reader (``daemon.metadata_reader``) handles what BentoML writes; anything
else goes to PyYAML. Either way the same checks decide whether the version is a
complete, valid store entry (REFERENCE.md §1).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

import yaml

from daemon.metadata_reader import Unsupported, read_fields

# BentoML writes a few hundred bytes; anything huge is not its work and is not parsed.
METADATA_MAX_BYTES = 1024 * 1024
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_metadata(
    yaml_path: str, file_name: str, name: str, version: str, size_hint: int, *, regular_file: bool = False
) -> tuple[dict[str, Any], str | None, bool]:
    """Given a version's metadata file (``size_hint``: its size from stat; ``regular_file``: stat saw a
    regular file), return (fields, problem or None, whether an I/O error caused the problem).
    Fields: ``created_at``, ``labels``, ``model_references``.

    Never raises: a missing, unreadable or malformed file is a problem.
    """
    try:
        fd = os.open(yaml_path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}, f"no {file_name}", False
    except OSError as error:
        return {}, f"cannot open {file_name}: {error.strerror or error}", True
    try:
        data = _read_at_most(fd, METADATA_MAX_BYTES + 1, size_hint + 1, regular_file)
    except OSError as error:
        return {}, f"cannot read {file_name}: {error.strerror or error}", True
    finally:
        os.close(fd)
    if len(data) > METADATA_MAX_BYTES:
        return {}, f"{file_name} is larger than {METADATA_MAX_BYTES} bytes", False
    fields, problem = _parse(data, file_name, name, version)
    return fields, problem, False


def _parse(data: bytes, file_name: str, name: str, version: str) -> tuple[dict[str, Any], str | None]:
    try:
        document: Any = read_fields(data)
    except Unsupported:
        try:
            document = yaml.load(data, Loader=_YAML_LOADER)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as error:
            # PyYAML's constructors raise plain ValueError for impossible dates such as 2026-13-45.
            return {}, f"malformed {file_name}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    if not isinstance(document, dict):
        return {}, f"{file_name} is empty or not a mapping"
    return parse_metadata(document, file_name, name, version)


def _read_at_most(fd: int, limit: int, first_read: int, regular_file: bool) -> bytes:
    # Asking os.read for the whole 1 MiB limit costs a 1 MiB allocation per file; the size from stat is enough.
    chunks = []
    total = 0
    wanted = min(max(first_read, 1), limit)
    while total < limit:
        chunk = os.read(fd, wanted)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if regular_file and len(chunk) < wanted:
            break  # a short read of a regular file is its end: no second read(2) just to see 0 bytes
        wanted = min(65536, limit - total)
    return b"".join(chunks)


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
    try:
        return parsed.astimezone(timezone.utc), None
    except OverflowError:
        return None, f"{file_name} has a creation_time outside the years 1 to 9999 in UTC ({raw})"


def _model_references(document: dict[str, Any]) -> tuple[str, ...]:
    entries: list[Any] = []
    if isinstance(document.get("models"), list):
        entries.extend(document["models"])
    services = document.get("services")
    for service in services if isinstance(services, list) else ():
        if isinstance(service, dict) and isinstance(service.get("models"), list):
            entries.extend(service["models"])
    tags = []
    for entry in entries:
        tag = entry.get("tag") if isinstance(entry, dict) else entry
        if isinstance(tag, str) and ":" in tag:
            tags.append(tag)
    return tuple(dict.fromkeys(tags))
