"""Running ``apply`` in-process, and letting another tool act between its scan and its deletions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.cli import main


def versions(home: Path, name: str = "iris") -> set[str]:
    name_dir = home / "models" / name
    if not name_dir.exists():
        return set()
    return {entry.name for entry in name_dir.iterdir() if entry.is_dir()}


def run_apply(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    code = main(["apply", "--config", str(config), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def race_after_scan(monkeypatch: pytest.MonkeyPatch, interfere: Callable[[Path], None]) -> None:
    """Make ``interfere(store_home)`` run right after apply's scan, before it acts: another tool racing it."""
    from daemon import observe

    real_scan = observe.scan_store

    def scan_then_race(store_home: Path, *rest, **options):  # type: ignore[no-untyped-def]
        inventory = real_scan(store_home, *rest, **options)
        interfere(store_home)
        return inventory

    monkeypatch.setattr(observe, "scan_store", scan_then_race)
