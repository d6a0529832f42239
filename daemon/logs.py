"""Operational logs: structlog lines on stderr (JSON off a terminal, readable on one).

Libraries that log through the standard ``logging`` module (APScheduler's "job missed" and "job raised"
warnings, a provider client's) are rendered by the same processors, so off a terminal every line of
stderr is one JSON object; their warnings and errors are kept, their chatter (INFO) is not.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from daemon.literal import visible

if TYPE_CHECKING:
    from structlog.typing import Processor


def _import_structlog() -> ModuleType:
    """Return structlog, imported (if nobody has yet) without letting it import rich.

    ``import structlog`` always imports ``structlog.dev`` and ``structlog.tracebacks``, which import
    rich (and with it pygments and attrs) if it is installed: ~100 ms of every command's start-up,
    for Rich tracebacks we never render — ``format_exc_info`` below turns an exception into a plain
    string before the console renderer sees it, so its exception formatter is never called.
    Rich stays importable for the tables afterwards.
    """
    if "structlog" in sys.modules:
        return sys.modules["structlog"]
    hidden = "rich" not in sys.modules
    if hidden:
        sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` raise ImportError
    try:
        import structlog
    finally:
        if hidden:
            del sys.modules["rich"]
    return structlog


def configure(level: int = logging.INFO) -> None:
    """Send structlog events to stderr; stdout stays free for command output."""
    structlog = _import_structlog()
    renderers: list[Processor]
    if sys.stderr.isatty():
        # The console renderer writes string values as they are; JSON escapes them by itself.
        renderers = [_visible_strings, structlog.dev.ConsoleRenderer(colors=False)]
    else:
        renderers = [structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Looked up per logger, so a replaced sys.stderr (tests, daemonisers) is honoured.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(structlog, renderers)


class _StandardLoggingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (tests and daemonisers replace it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _route_standard_logging(structlog: ModuleType, renderers: list[Processor]) -> None:
    """Render records of the ``logging`` module (WARNING and above) like our own events, on stderr."""
    import structlog.stdlib

    handler = _StandardLoggingHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
    ))
    root = logging.getLogger()
    # Configured once per command, but tests run many in one process: replace our handler, keep anyone else's.
    root.handlers = [existing for existing in root.handlers if not isinstance(existing, _StandardLoggingHandler)]
    root.addHandler(handler)


def _visible_strings(logger: object, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Show control characters in string values as escapes: a path or a provider's error cannot steer the terminal.

    A formatted traceback keeps its line breaks."""
    shown = {key: visible(value) if isinstance(value, str) else value for key, value in event.items()}
    if isinstance(event.get("exception"), str):
        shown["exception"] = "\n".join(visible(line) for line in event["exception"].split("\n"))
    return shown
