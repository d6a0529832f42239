"""Instants: the clock a run reads once (``utc_now``), and instants as people type them (``--at``, ``--since``)."""

from __future__ import annotations

from datetime import datetime, timezone

from daemon.errors import UsageError


def parse_instant(text: str, option: str = "--at") -> datetime:
    """Given an ISO 8601 instant with an offset or ``Z``, return it aware. Raise UsageError naming ``option``.

    Raise it too for an instant that has no UTC equivalent (``0001-01-01T00:00:00+01:00``): every
    instant is computed with in UTC.
    """
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option}: invalid instant {text!r}; expected ISO 8601 such as 2026-11-22T10:00:00Z") from None
    if parsed.tzinfo is None:
        raise UsageError(f"{option}: instant {text!r} has no timezone; add Z or an offset such as +01:00")
    try:
        parsed.astimezone(timezone.utc)
    except OverflowError:
        raise UsageError(f"{option}: instant {text!r} is outside the years 1 to 9999 in UTC") from None
    return parsed


def utc_now() -> datetime:
    """Return the current instant, aware, in UTC: the clock a run reads unless it is given another."""
    return datetime.now(timezone.utc)
