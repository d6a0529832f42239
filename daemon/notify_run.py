"""One message per run: a JSON webhook, healthchecks-style pings, and optionally Apprise.

Not to be confused with daemon/notify.py (systemd's sd_notify). Which runs send what:

- healthchecks (``healthchecks_url``): ``<url>/start`` once a run holds the store lock (a busy
  store starts nothing), then ``<url>`` on success or ``<url>/fail`` on failure — for every run,
  so the check is a dead-man's switch (healthchecks.io, Cronitor, Uptime Kuma push monitors).
- webhook and Apprise: every ``apply``; a daemon run only when it had something to do (an action
  planned or refused) or did not succeed, unless ``every_run = true`` (an off-hours policy is
  reconciled every few minutes and would otherwise talk all day).

Every send runs in a thread of its own, all of them together bounded by ``timeout``: a failed
or slow receiver is logged (``notify.failed``, the URL shown as scheme://host/… only) and never
changes the run's exit code nor delays it by more than ``timeout``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog

from daemon.config import NotifySection
from daemon.redact import describe_url
from daemon.run_figures import RunSummary
from policies.durations import format_bytes
from policies.model import format_instant

log = structlog.get_logger("retentiond")
HUMAN_ERRORS_SHOWN = 5


def payload(summary: RunSummary, host: str) -> dict[str, Any]:
    """Given a run's summary, return the webhook's JSON body (DESIGN.md's shape, nothing more)."""
    return {
        "event": summary.event,
        "result": "success" if summary.success else "failure",
        "host": host,
        "run_id": summary.run_id,
        "policies": summary.policies,
        "started_at": format_instant(summary.started_at),
        "finished_at": format_instant(summary.finished_at),
        "duration_s": round(summary.duration_s, 3),
        "counts": summary.counts(),
        "errors": summary.errors,
    }


def human_text(summary: RunSummary, host: str) -> tuple[str, str]:
    """Return (title, body) of a short message for people (Apprise)."""
    counts = summary.counts()
    title = f"retentiond on {host}: {'success' if summary.success else 'failure'}"
    body = (
        f"{summary.event} {summary.run_id or '-'} ({', '.join(summary.policies)}): {counts['deleted']} done, "
        f"{counts['failed']} failed, {counts['skipped']} skipped of {counts['planned']} planned; "
        f"{format_bytes(counts['bytes_freed'])} freed in {summary.duration_s:.1f}s"
    )
    shown = summary.errors[:HUMAN_ERRORS_SHOWN]
    more = len(summary.errors) - len(shown)
    return title, "\n".join([body, *shown, *([f"… and {more} more"] if more > 0 else [])])


class RunNotifier:
    """Sends one run's messages. ``started`` at the start, ``finished`` once; both return at once
    or within ``timeout``."""

    def __init__(self, section: NotifySection, daemon: bool, host: str | None = None) -> None:
        self.section = section
        self.daemon = daemon
        self.host = host or socket.gethostname()
        self._start: threading.Thread | None = None

    def started(self) -> None:
        """Ping ``<healthchecks_url>/start`` in the background (the run holds the store lock: never wait here)."""
        url = self.section.healthchecks_url
        if url is not None:
            self._start = _spawn(partial(_get, url.get_secret_value().rstrip("/") + "/start", self.section.timeout_seconds))

    def finished(self, summary: RunSummary) -> None:
        """Send the run's messages; return when all are sent or ``timeout`` has passed."""
        deadline = time.monotonic() + self.section.timeout_seconds
        sends: list[tuple[str, threading.Thread]] = []
        section = self.section
        if section.healthchecks_url is not None:
            base = section.healthchecks_url.get_secret_value().rstrip("/")
            ping = base if summary.success else base + "/fail"
            sends.append((ping, _spawn(partial(self._ping_after_start, ping, deadline))))
        if not self.daemon or summary.acted or section.every_run:
            if section.webhook_url is not None:
                hook = section.webhook_url.get_secret_value()
                sends.append((hook, _spawn(partial(_post, hook, payload(summary, self.host), section, deadline))))
            if section.apprise_urls:
                title, text = human_text(summary, self.host)
                sends.append(("apprise://", _spawn(partial(_apprise, section, title, text, summary.success))))
        for url, thread in sends:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("notify.failed", url=describe_url(url), error=f"no answer within {section.timeout}; not waiting")

    def _ping_after_start(self, url: str, deadline: float) -> None:
        # A /start that lands after the result would reopen the check: send it first.
        if self._start is not None:
            self._start.join(max(0.0, deadline - time.monotonic()))
        _get(url, max(0.1, deadline - time.monotonic()))


def _spawn(send: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=_logged(send), name="retentiond-notify", daemon=True)
    thread.start()
    return thread


def _logged(send: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            send()
        except Exception as error:  # a notification never fails a run: log it, go on
            log.warning("notify.failed", error=f"{type(error).__name__}")

    return run


def _get(url: str, timeout: float) -> None:
    _check(url, "GET", timeout)


def _post(url: str, body: dict[str, Any], section: NotifySection, deadline: float) -> None:
    headers = {name: value.get_secret_value() for name, value in section.webhook_headers.items()}
    _check(url, "POST", max(0.1, deadline - time.monotonic()), json=body, headers=headers)


def _check(url: str, method: str, timeout: float, **options: Any) -> None:
    """Send; log a failure with the URL shown as scheme://host/… and the error's kind, never its text
    (httpx puts the whole URL, secrets included, into some of its messages)."""
    import httpx  # ~50 ms: only in runs that send something

    try:
        response = httpx.request(method, url, timeout=timeout, **options)
    except httpx.HTTPError as error:
        log.warning("notify.failed", url=describe_url(url), error=type(error).__name__)
        return
    if response.status_code >= 400:
        log.warning("notify.failed", url=describe_url(url), status=response.status_code)


def _apprise(section: NotifySection, title: str, body: str, success: bool) -> None:
    import apprise

    # Apprise logs through the standard library; its lines could name a service's URL.
    logging.getLogger("apprise").addHandler(logging.NullHandler())
    logging.getLogger("apprise").propagate = False
    notifier = apprise.Apprise()
    for url in section.apprise_urls:
        if not notifier.add(url.get_secret_value()):
            log.warning("notify.failed", url="apprise://", error="Apprise does not understand one of apprise_urls")
    notify_type = apprise.NotifyType.SUCCESS if success else apprise.NotifyType.FAILURE
    if len(notifier) and not notifier.notify(title=title, body=body, notify_type=notify_type):
        log.warning("notify.failed", url="apprise://", error="Apprise could not deliver to every URL")
