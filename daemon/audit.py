"""The audit log: one JSON line per intent and per outcome, fsynced before acting.

Records are rendered by structlog. ``sync()`` makes everything written so far
durable; the executor calls it after writing the intents of a batch and before
the first action of that batch. A record that cannot be written raises
``AuditError``, and the action it describes is not taken.

Tamper evidence: every record carries ``prev``, the SHA-256 of the previous
record's line, so an edited, removed or reordered record breaks the chain at the
next one. ``<log>.head`` remembers the last record written, which catches records
cut off the end; every run writes it when it closes the log, so a log with records
and no head is reported too (truncation cannot be ruled out). Rotation (``rotate_bytes``) renames the full file to
``<log>.<UTC stamp>`` and the new file's first record continues the chain. The
chain is evidence against edits, not a signature: whoever can rewrite the log and
its head can rewrite the chain too.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
from collections.abc import Iterator, MutableMapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from daemon.errors import AuditError
from daemon.files import write_file_atomically

GENESIS = "0" * 64
TAIL_BYTES = 1024 * 1024


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class _ChainedLine:
    """A structlog logger that appends rendered lines to an open file and remembers the last hash."""

    def __init__(self, handle: BinaryIO, prev: str) -> None:
        self._handle = handle
        self.prev = prev
        self.count = 0

    def add_prev(self, _logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event["prev"] = self.prev
        return event

    def msg(self, line: str) -> None:
        data = line.encode("utf-8")
        self._handle.write(data + b"\n")
        self.prev = line_hash(data)
        self.count += 1

    info = msg


class AuditLog:
    """An append-only, hash-chained audit file for one run."""

    def __init__(self, path: Path, run_id: str, rotate_bytes: int | None = None) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            prev = last_line_hash(path)
            rotated = _rotate(path) if rotate_bytes and _size(path) >= rotate_bytes else None
            self._handle: BinaryIO = open(path, "ab", buffering=1024 * 1024)  # noqa: SIM115
            if rotated is None and _ends_torn(path):
                self._handle.write(b"\n")  # a crash cut the last line short; never glue a record onto it
        except OSError as error:
            raise AuditError(f"cannot open the audit log {path}: {error.strerror or error}") from None
        self._chain = _ChainedLine(self._handle, prev)
        self._logger = structlog.wrap_logger(
            self._chain,
            processors=[
                self._chain.add_prev,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.processors.JSONRenderer(),
            ],
            context_class=dict,
        ).bind(run_id=run_id, host=socket.gethostname(), pid=os.getpid())
        if rotated is not None:
            self.record("audit.rotated", previous_file=rotated.name)

    def record(self, event: str, **fields: Any) -> None:
        """Append one record (not yet durable). Raise AuditError if it cannot be written."""
        try:
            self._logger.info(event, **fields)
        except (OSError, ValueError) as error:
            raise AuditError(f"cannot write the audit log {self.path}: {_describe(error)}") from None

    def sync(self) -> None:
        """Make every record written so far durable. Raise AuditError if that fails."""
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except (OSError, ValueError) as error:
            raise AuditError(f"cannot write the audit log {self.path}: {_describe(error)}") from None

    def close(self) -> None:
        try:
            self.sync()
            if self._chain.count:
                head = json.dumps({"last_hash": self._chain.prev, "file": self.path.name}).encode()
                write_file_atomically(head_path(self.path), head)
        except OSError as error:
            raise AuditError(f"cannot write the audit head {head_path(self.path)}: {_describe(error)}") from None
        finally:
            with suppress(OSError):
                self._handle.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.close()
        except AuditError:
            if exc_info[0] is None:
                raise


def head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _size(path: Path) -> int:
    """Return the size of a regular file; 0 for a missing file or anything else (/dev/full, a FIFO)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def last_line_hash(path: Path) -> str:
    """Return the hash of the last record of ``path`` (GENESIS for a missing or empty file).

    A torn last line (a crash mid-write) is hashed as it stands, so the chain still links.
    """
    size = _size(path)
    if size == 0:
        return GENESIS
    with path.open("rb") as handle:
        handle.seek(max(0, size - TAIL_BYTES))
        tail = handle.read(TAIL_BYTES)
    lines = [line for line in tail.split(b"\n") if line.strip()]
    return line_hash(lines[-1]) if lines else GENESIS


def _ends_torn(path: Path) -> bool:
    size = _size(path)
    if size == 0:
        return False
    with path.open("rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) != b"\n"


def _rotate(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    rotated = path.with_name(f"{path.name}.{stamp}")
    os.rename(path, rotated)
    return rotated


def _describe(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def read_chain(path: Path) -> Iterator[dict[str, Any]]:
    """Given an audit log, yield the records of its rotated files, oldest first, then of the log itself.

    A file removed between listing and reading (old files pruned meanwhile) is skipped. Raise
    AuditError naming the file if one cannot be read.
    """
    for file in chain_files(path):
        try:
            yield from read_records(file)
        except FileNotFoundError:
            continue
        except OSError as error:
            raise AuditError(f"cannot read the audit log {file}: {_describe(error)}") from None


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of one audit file in order. A torn last line (a crash mid-write) is skipped."""
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def record_time(record: dict[str, Any]) -> datetime | None:
    """Return the aware ``ts`` of a record, or None when it has none."""
    raw = record.get("ts")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class ChainReport:
    """What ``audit verify`` found: files and records checked, the first problem (None: intact)."""

    files: tuple[Path, ...]
    records: int
    problem: str | None = None
    note: str | None = None


def chain_files(path: Path) -> list[Path]:
    """Return the rotated files of an audit log, oldest first, then the log itself."""
    rotated = sorted(p for p in path.parent.glob(f"{path.name}.*") if p.name[len(path.name) + 1 :][:1].isdigit())
    return [*rotated, path] if path.exists() else rotated


def verify_chain(path: Path) -> ChainReport:
    """Walk the hash chain through the rotated files and the log; report the first break.

    Raise AuditError naming the file if one cannot be read.
    """
    files = tuple(chain_files(path))
    head, head_problem = _read_head(path)
    prev, count, note, head_seen = None, 0, None, False
    for file in files:
        try:
            content = file.read_bytes()
        except OSError as error:
            raise AuditError(f"cannot read the audit log {file}: {_describe(error)}") from None
        for number, raw in enumerate(content.split(b"\n"), 1):
            if not raw.strip():
                continue
            where = f"{file.name} line {number}"
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                return ChainReport(files, count, f"{where} is not a JSON record (edited, or cut short by a crash)")
            if prev is None and record.get("prev") != GENESIS:
                if record.get("event") != "audit.rotated":
                    return ChainReport(files, count, f"{where} is not the start of a chain: records before it were removed")
                note = f"the chain starts in {file.name}; older rotated files are not present"
            elif prev is not None and record.get("prev") != prev:
                return ChainReport(files, count, (
                    f"{where} does not follow the record before it: that record was edited or removed, "
                    "or records were reordered"
                ))
            prev, count = line_hash(raw), count + 1
            head_seen = head_seen or prev == head
    if head_problem is None and head is None and count:
        # Every run writes the head when it closes the log; without it, a log cut short looks whole.
        head_problem = (
            f"{head_path(path).name} (the last record retentiond wrote) is missing although the log holds "
            f"{count} records: records cut off the end cannot be ruled out"
        )
    elif head_problem is None and head is not None and not head_seen:
        head_problem = f"the last record retentiond wrote ({head_path(path).name}) is missing: records were removed from the end"
    return ChainReport(files, count, head_problem, note)


def _read_head(path: Path) -> tuple[str | None, str | None]:
    """Return (hash of the last record written or None when there is no head file, problem reading it)."""
    try:
        head = json.loads(head_path(path).read_bytes())
    except FileNotFoundError:
        return None, None
    except OSError as error:
        return None, f"{head_path(path).name} cannot be read: {_describe(error)}"
    except ValueError:
        return None, f"{head_path(path).name} is unreadable"
    last_hash = head.get("last_hash") if isinstance(head, dict) else None
    if not isinstance(last_hash, str):
        return None, f"{head_path(path).name} is unreadable: no last_hash"
    return last_hash, None


def tail_intact(path: Path) -> bool:
    """Given an audit log that a run has just opened and written to, return whether its tail is intact.

    The cheap check a run makes (the metric ``retentiond_audit_chain_intact``); ``audit verify``
    walks the whole chain. Within the last TAIL_BYTES every record must follow the one before it,
    and the record the last run ended on (``<log>.head``) must still be there when the window
    holds the whole file. A head that is behind the log (a run that crashed) is fine.
    """
    head, problem = _read_head(path)
    if problem is not None:
        return False
    size = _size(path)
    with path.open("rb") as handle:
        handle.seek(max(0, size - TAIL_BYTES))
        tail = handle.read(TAIL_BYTES)
    lines = [line for line in tail.split(b"\n") if line.strip()]
    if size > TAIL_BYTES and lines:
        lines = lines[1:]  # cut in the middle of a record
    hashes = [line_hash(line) for line in lines]
    first_prev = None
    for index, line in enumerate(lines):
        try:
            prev = json.loads(line).get("prev")
        except (ValueError, AttributeError):
            continue  # a line cut short by a crash: hashed as it stands by the record after it
        if index == 0:
            first_prev = prev
        elif prev != hashes[index - 1]:
            return False
    if head is None or size > TAIL_BYTES:
        return True
    return head in hashes or head == first_prev
