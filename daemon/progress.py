"""Progress of a long `apply` off a terminal: a log line every few seconds, so a CI log shows the run is alive.

On a terminal `apply` shows a bar instead (:class:`daemon.render.ProgressBar`). Here a run that ends
within ``INTERVAL_SECONDS`` says nothing; a longer one logs ``run.progress`` (a JSON line like every
other line on stderr off a terminal) with counts and a ``progress`` text such as
``deleting: 1200/5000 versions, 3.1 GiB freed``. Imports neither rich nor the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from policies.durations import format_bytes

if TYPE_CHECKING:
    from daemon.executor import ActionResult
    from policies.model import Plan

INTERVAL_SECONDS = 5.0
log = structlog.get_logger("retentiond")


class ProgressLines:
    """A ``RunProgress`` (daemon.executor) that logs one ``run.progress`` line per ``interval`` seconds of acting."""

    def __init__(self, interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = INTERVAL_SECONDS if interval is None else interval
        self.clock = clock
        self.deletions = self.deleted = self.others = self.others_done = self.bytes_freed = 0
        self._last = 0.0

    def begin(self, plan: Plan) -> None:
        self.deletions = sum(1 for action in plan.actions if action.action == "delete")
        self.others = len(plan.actions) - self.deletions
        self._last = self.clock()

    def advance(self, result: ActionResult) -> None:
        if result.action.action == "delete":
            self.deleted += 1
        else:
            self.others_done += 1
        self.bytes_freed += result.bytes_freed
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            log.info("run.progress", progress=self.describe(), versions_done=self.deleted, versions_planned=self.deletions,
                     bytes_freed=self.bytes_freed)

    def describe(self) -> str:
        """Return the progress in words: ``deleting: 1200/5000 versions, 3.1 GiB freed``."""
        text = f"deleting: {self.deleted}/{self.deletions} versions, {format_bytes(self.bytes_freed)} freed"
        if self.others:
            text += f"; {self.others_done}/{self.others} deployment actions"
        return text

    def stop(self) -> None:
        """Nothing to clean up; here so that a caller can stop either kind of progress alike."""
