"""Push a version to BentoCloud with BentoML's own CLI before deleting it (``store.push_before_delete``).

``bentoml models push NAME:VERSION`` / ``bentoml push NAME:VERSION`` (a bento pushes its models
first) write the version as a tar archive into BentoML's tmp directory (``$BENTOML_HOME/tmp``)
and upload it, so a push needs about the version's size free there. retentiond runs the
``bentoml`` installed beside it (on PATH, or next to its own Python), with the same endpoint and
token it asks the registry with, in a process group of its own that it stops after
``store.push_timeout`` (SIGINT, so BentoML removes its archive, then SIGKILL), or as soon as the
run is asked to stop (a push is only the preparation of a deletion: stopping it deletes nothing).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from policies.durations import format_bytes

# Room beyond the version's own size: tar headers and padding, and space others may need meanwhile.
ARCHIVE_MARGIN_BYTES = 64 * 1024 * 1024
INTERRUPT_GRACE_SECONDS = 10
POLL_SECONDS = 0.5
ERROR_EXCERPT_CHARS = 300


def find_bentoml() -> str | None:
    """Return the path of the ``bentoml`` CLI on PATH, else next to this Python, else None."""
    found = shutil.which("bentoml")
    if found:
        return found
    beside = Path(sys.executable).parent / "bentoml"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def archive_dir(home: Path) -> Path:
    """Return where BentoML writes a push's archive: ``$BENTOML_HOME/tmp``, else the home if tmp is not a plain directory."""
    tmp = home / "tmp"
    return tmp if tmp.is_dir() and not tmp.is_symlink() else home


def room_for_archive(home: Path, size_bytes: int) -> str | None:
    """Given a version's size, return None if its push archive fits in BentoML's tmp directory, else why not."""
    needed = size_bytes + size_bytes // 100 + ARCHIVE_MARGIN_BYTES
    where = archive_dir(home)
    try:
        free = shutil.disk_usage(where).free
    except OSError as error:
        return f"cannot read the free space of {where}: {error.strerror or error}"
    if free < needed:
        return f"no room to push it: needs {format_bytes(needed)} free in {where}, {format_bytes(free)} free"
    return None


@dataclass(frozen=True)
class Pusher:
    """Runs ``bentoml`` pushes against one BentoCloud endpoint for one BentoML home."""

    bentoml: str
    home: Path
    endpoint: str
    api_token: str
    timeout_seconds: float
    stop: threading.Event | None = None

    def push(self, kind: str, name: str, version: str) -> str | None:
        """Push one version; return None on success, else what went wrong (never raises)."""
        tag = f"{name}:{version}"
        command = [self.bentoml, "models", "push", tag] if kind == "model" else [self.bentoml, "push", tag]
        environment = dict(
            os.environ, BENTOML_HOME=str(self.home), BENTO_CLOUD_API_KEY=self.api_token, BENTO_CLOUD_API_ENDPOINT=self.endpoint
        )
        environment.pop("BENTOML_CLOUD_CONTEXT", None)
        try:
            process = subprocess.Popen(
                command, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            return f"cannot run {self.bentoml}: {error.strerror or error}"
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            try:
                output, _ = process.communicate(timeout=max(min(POLL_SECONDS, deadline - time.monotonic()), 0))
                break
            except subprocess.TimeoutExpired:
                if self.stop is not None and self.stop.is_set():
                    _stop(process)
                    return f"`{' '.join(command[1:])}` stopped: the run was asked to stop"
                if time.monotonic() >= deadline:
                    _stop(process)
                    return f"`{' '.join(command[1:])}` did not finish within {self.timeout_seconds:g}s; stopped"
        if process.returncode != 0:
            return f"`{' '.join(command[1:])}` exited {process.returncode}: {self._excerpt(output)}"
        return None

    def _excerpt(self, output: bytes) -> str:
        lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
        text = " / ".join(lines[-3:])[-ERROR_EXCERPT_CHARS:] or "no output"
        return text.replace(self.api_token, "***")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Interrupt the push's process group (BentoML then removes its archive), and kill it if it lingers."""
    for sent, wait_seconds in ((signal.SIGINT, INTERRUPT_GRACE_SECONDS), (signal.SIGKILL, None)):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sent)
        try:
            process.communicate(timeout=wait_seconds)
            return
        except subprocess.TimeoutExpired:
            continue
