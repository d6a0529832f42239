"""SIGINT, SIGTERM and SIGHUP during a one-off run (``retentiond apply``: Ctrl-C, ``systemctl stop`` of the timer
unit, the terminal or SSH session closing).

The first signal asks the run to stop at its next safe point: the action in progress finishes, every
written intent gets its outcome, and the run is recorded as ``run.interrupted``. A second signal ends
the process at once, by that signal, as SIGKILL would: the store stays consistent (a version is moved
out with one rename) and the next run empties the trash, but the outcomes of the batch in progress
are lost. The exit code is 128 + the signal number: 130 after SIGINT, 143 after SIGTERM, 129 after SIGHUP.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import suppress
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequest:
    """Within its ``with`` block (in the main thread), SIGINT, SIGTERM and SIGHUP set ``event`` instead of ending the process."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        # Only the main thread may install handlers; elsewhere (a test calling the CLI from a thread) none are.
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal_number).name if self.signal_number is not None else "stop request"

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal_number if self.signal_number is not None else signal.SIGTERM)

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        if self.signal_number is not None:
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        self.signal_number = number
        self.event.set()
        name = signal.Signals(number).name
        message = f"retentiond: {name}: stopping once the action in progress, if any, is done ({name} again stops at once)\n"
        # os.write, not print: the main thread may be half-way through a write to sys.stderr right now.
        with suppress(OSError):
            os.write(2, message.encode())
