"""Paths in the config: absolute after ``~`` expansion, or refused.

A relative ``store.home`` (or an empty ``RETENTIOND_STORE__HOME``, which reads as ``.``)
would silently mean whatever directory the daemon happened to start in. This module
imports nothing of ours, so both the config tree and the provider specs can use it.
"""

from __future__ import annotations

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
