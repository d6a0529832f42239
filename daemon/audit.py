"""The audit log: one JSON line per intent and per outcome, fsynced before acting.

Records are rendered by structlog. ``sync()`` makes everything written so far
durable; the executor calls it after writing the intents of a batch and before
the first action of that batch. A record that cannot be written raises
``AuditError``, and the action it describes is not taken.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from daemon.errors import AuditError


class _DurableLine:
    """A structlog logger that appends rendered lines to an open file."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def msg(self, line: str) -> None:
        self._handle.write(line.encode("utf-8") + b"\n")

    info = msg


class AuditLog:
    """An append-only audit file for one run."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._handle: BinaryIO = open(path, "ab", buffering=1024 * 1024)  # noqa: SIM115
        except OSError as error:
            raise AuditError(f"cannot open the audit log {path}: {error.strerror or error}") from None
        self._logger = structlog.wrap_logger(
            _DurableLine(self._handle),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.processors.JSONRenderer(),
            ],
            context_class=dict,
        ).bind(run_id=run_id, host=socket.gethostname(), pid=os.getpid())

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


def _describe(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of an audit log in order. A torn last line (a crash mid-write) is skipped."""
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
