"""Paths in the config: absolute after ``~`` expansion, or refused.

A relative ``store.home`` (or an empty ``RETENTIOND_STORE__HOME``, which reads as ``.``)
would silently mean whatever directory the daemon happened to start in. This module
imports nothing of ours, so both the config tree and the provider specs can use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator


def to_absolute_path(value: Any) -> Path:
    """Given a config value, return it as an absolute path with ``~`` expanded. Raise ValueError otherwise."""
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"a path must be text such as '/var/lib/retentiond', not {type(value).__name__}")
    if not value.strip():
        raise ValueError("the path is empty; write an absolute path such as '/var/lib/retentiond'")
    if "\0" in value:
        raise ValueError("a path must not contain a NUL character")
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # ~user of an unknown user, or no home directory to expand ~ to
        raise ValueError(f"cannot expand {value[:200]!r}: unknown user or no home directory") from None
    if not path.is_absolute():
        raise ValueError(
            f"relative path {value[:200]!r} would depend on the directory retentiond starts in; "
            "write an absolute path (or one starting with ~)"
        )
    return path


AbsolutePath = Annotated[Path, BeforeValidator(to_absolute_path)]


def systemd_directory(variable: str, fallback: str) -> Path:
    """Given one of systemd's directory variables (``STATE_DIRECTORY``, ``LOGS_DIRECTORY``: set for a unit with
    ``StateDirectory=``/``LogsDirectory=``, a colon-separated list), return its first absolute entry, else
    ``fallback``. The shipped units set both to the documented defaults (/var/lib/retentiond, /var/log/retentiond);
    a unit that names other directories then needs no config change, and neither do the test suites, which point
    these variables at their own scratch directories instead of the machine's."""
    first = os.environ.get(variable, "").split(":")[0]
    return Path(first) if first.startswith("/") and "\0" not in first else Path(fallback)
