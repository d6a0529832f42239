"""Fixtures shared by the policy tests."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def host_in_berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run the test with the process's local timezone set to Europe/Berlin (DST on 2025-03-30): a
    decision that read the host's zone instead of the configured one (or UTC) would change."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
