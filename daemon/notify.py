"""The systemd notify protocol (``sd_notify``) without a dependency: one datagram per message."""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger("retentiond")
# A receiver that stops reading (its queue holds ~10 datagrams) must not stall the daemon, its SIGTERM included.
SEND_TIMEOUT_SECONDS = 1.0


class Notifier:
    """Sends ``READY=1``, ``STATUS=…``, ``WATCHDOG=1``, ``STOPPING=1`` to ``$NOTIFY_SOCKET`` if set."""

    def __init__(self, address: str | None = None) -> None:
        raw = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        # A leading "@" names a socket in the abstract namespace.
        self._address = "\0" + raw[1:] if raw.startswith("@") else raw
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.settimeout(SEND_TIMEOUT_SECONDS)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *fields: str) -> None:
        """Send one message of ``KEY=value`` lines; failures are logged, never raised."""
        if self._socket is None:
            return
        try:
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as error:  # socket.timeout included: the message is dropped, the daemon goes on
            log.warning("notify.failed", error=error.strerror or str(error) or type(error).__name__)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval_seconds() -> float | None:
    """Return half of ``$WATCHDOG_USEC`` in seconds (how often to ping), or None when no watchdog is set."""
    raw = os.environ.get("WATCHDOG_USEC")
    watchdog_pid = os.environ.get("WATCHDOG_PID")
    if not raw or (watchdog_pid and watchdog_pid != str(os.getpid())):
        return None
    try:
        microseconds = int(raw)
    except ValueError:
        return None
    return microseconds / 2 / 1_000_000 if microseconds > 0 else None
