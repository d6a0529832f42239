"""Bounded retries with exponential backoff for transient provider failures."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import structlog

from daemon.providers import TransientProviderError

T = TypeVar("T")
log = structlog.get_logger("retentiond")


def with_retries(
    call: Callable[[], T],
    what: str,
    *,
    attempts: int = 4,
    base_delay_seconds: float = 0.5,
    max_delay_seconds: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; retry TransientProviderError up to ``attempts`` times in all with jittered backoff.

    Other errors are raised at once. Raise the last TransientProviderError when every attempt failed.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except TransientProviderError as error:
            if attempt == attempts:
                raise
            delay = min(max_delay_seconds, base_delay_seconds * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log.warning("provider.retrying", call=what, attempt=attempt, error=str(error), delay_seconds=round(delay, 2))
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
