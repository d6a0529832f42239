"""One version's metadata file (model.yaml / bento.yaml): read it, parse it, check it.

The fast reader (``daemon.metadata_reader``) handles what BentoML writes; anything
else goes to PyYAML. Either way the same checks decide whether the version is a
complete, valid store entry (REFERENCE.md §1), and which models a bento references.

A bento's references are either all known or unknown, never partly known: a file
that cannot be read or parsed, that names another bento, or that holds a model
list or entry this module does not understand (not a list, not a mapping with a
``tag`` ``name:version``) gives ``references_unknown``, the reason. Dropping such an
entry would leave a model unprotected that BentoML may still load.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from typing import Any

import yaml

from daemon.metadata_reader import Unsupported, read_fields
from daemon.tags import is_full_tag

# BentoML writes a few hundred bytes; anything huge is not its work and is not parsed.
METADATA_MAX_BYTES = 1024 * 1024
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_metadata(
    yaml_path: str, file_name: str, name: str, version: str, size_hint: int, *, regular_file: bool = False
) -> tuple[dict[str, Any], str | None, bool]:
    """Given a version's metadata file (``size_hint``: its size from stat; ``regular_file``: stat saw a
    regular file), return (fields, problem or None, whether an I/O error caused the problem).
    Fields: ``created_at``, ``labels``, ``model_references`` and ``references_unknown`` (why the
    references cannot be known, or None; always set).

    Never raises: a missing, unreadable or malformed file is a problem.
    """
    try:
        # O_NONBLOCK: a FIFO in the metadata file's place would otherwise block the scan until a writer came.
        fd = os.open(yaml_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return _unreadable(f"no {file_name}"), f"no {file_name}", False
    except OSError as error:
        problem = f"cannot open {file_name}: {error.strerror or error}"
        return _unreadable(problem), problem, True
    try:
        if not regular_file and not stat.S_ISREG(os.fstat(fd).st_mode):
            not_a_file = f"{file_name} is not a regular file"
            return _unreadable(not_a_file), not_a_file, False
        data = _read_at_most(fd, METADATA_MAX_BYTES + 1, size_hint + 1, regular_file)
    except OSError as error:
        problem = f"cannot read {file_name}: {error.strerror or error}"
        return _unreadable(problem), problem, True
    finally:
        os.close(fd)
    if len(data) > METADATA_MAX_BYTES:
        too_large = f"{file_name} is larger than {METADATA_MAX_BYTES} bytes"
        return _unreadable(too_large), too_large, False
    fields, parse_problem = _parse(data, file_name, name, version)
    return fields, parse_problem, False


def _unreadable(problem: str) -> dict[str, Any]:
    return {"references_unknown": problem}


def _parse(data: bytes, file_name: str, name: str, version: str) -> tuple[dict[str, Any], str | None]:
    try:
        document: Any = read_fields(data)
    except Unsupported:
        try:
            document = yaml.load(data, Loader=_YAML_LOADER)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as error:
            # PyYAML's constructors raise plain ValueError for impossible dates such as 2026-13-45.
            problem = f"malformed {file_name}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
            return _unreadable(problem), problem
    if not isinstance(document, dict):
        problem = f"{file_name} is empty or not a mapping"
        return _unreadable(problem), problem
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
    references, unknown = model_references(document)
    fields: dict[str, Any] = {
        "model_references": references, "references_unknown": None if unknown is None else f"{file_name} {unknown}"
    }
    if document.get("name") != name or str(document.get("version")) != version:
        misnamed = f"{file_name} names {document.get('name')}:{document.get('version')}, not its directory"
        # Whose references these are is unclear: they may belong to another bento, not to this one.
        fields["model_references"], fields["references_unknown"] = (), misnamed
        return fields, misnamed
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


def model_references(document: dict[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """Given a parsed bento.yaml, return (the model tags it references, None), or ((), why they are unknown).

    BentoML reads the top-level ``models`` (older bentos) and ``models`` of each of ``services``; each
    entry is a mapping whose ``tag`` is ``name:version``. Anything else there is not understood.
    """
    lists: list[tuple[str, Any]] = []
    if "models" in document:
        lists.append(("models", document["models"]))
    if "services" in document:
        services = document["services"]
        if not isinstance(services, list):
            return (), "services is not a list"
        for index, service in enumerate(services):
            if not isinstance(service, dict):
                return (), f"services[{index}] is not a mapping"
            if "models" in service:
                lists.append((f"services[{index}].models", service["models"]))
    tags: list[str] = []
    for place, entries in lists:
        if not isinstance(entries, list):
            return (), f"{place} is not a list"
        for index, entry in enumerate(entries):
            tag = entry.get("tag") if isinstance(entry, dict) else None
            if not isinstance(tag, str) or not is_full_tag(tag):
                return (), f"{place}[{index}] is not a mapping with a tag name:version"
            tags.append(tag)
    return tuple(dict.fromkeys(tags)), None
