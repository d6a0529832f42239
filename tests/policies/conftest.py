"""Fixtures shared by the policy tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def host_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Return a function that sets the process's local timezone (``TZ``) for the rest of the test: a
    decision that read the host's zone instead of the configured one (or UTC) would change."""

    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def host_in_berlin(host_zone: Callable[[str], None]) -> None:
    """Run the test with the host in Europe/Berlin (DST on 2025-03-30)."""
    host_zone("Europe/Berlin")
