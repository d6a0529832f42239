"""The daemon as a subprocess (``retentiond run`` with a fake notify socket), its config and its store's size."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


NOW = datetime.now(timezone.utc)


class Daemon:
    """A `retentiond run` child process with a notify socket the test reads."""

    def __init__(self, root: Path, config: Path) -> None:
        self.root = root
        self.config = config
        self.messages: list[str] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        socket_path = root / "notify.sock"
        self._socket.bind(str(socket_path))
        self._socket.settimeout(0.2)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("RETENTIOND_")}
        environment.update(NOTIFY_SOCKET=str(socket_path), WATCHDOG_USEC="1000000", PYTHONPATH=str(REPO))
        self.log = (root / "daemon.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--config", str(config)],
            stdout=self.log, stderr=subprocess.STDOUT, env=environment, cwd=REPO,
        )

    def read_messages(self, until: str, timeout: float = 20) -> list[str]:
        """Collect notify messages until one contains ``until``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.messages.append(self._socket.recv(4096).decode())
            except TimeoutError:
                if self.process.poll() is not None:
                    break
                continue
            if until in self.messages[-1]:
                return self.messages
        raise AssertionError(f"no {until!r} within {timeout}s; got {self.messages}; log:\n{self.logs()}")

    def logs(self) -> str:
        self.log.flush()
        return (self.root / "daemon.log").read_text()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.read_messages_nowait()
        return code

    def read_messages_nowait(self) -> None:
        self._socket.settimeout(0.05)
        while True:
            try:
                self.messages.append(self._socket.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._socket.close()
        self.log.close()


def write_config(root: Path, home: Path, extra: str) -> Path:
    config = root / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n[daemon]\nstate_dir = "{root / "state"}"\naudit_log = "{root / "audit.jsonl"}"\n' + extra
    )
    return config


def store_bytes(home: Path) -> int:
    """Disk usage of the model versions as du counts it (what a disk budget measures), tolerating versions the
    daemon deletes while we walk."""
    total = 0
    for version_dir in (home / "models").glob("*/*"):
        with contextlib.suppress(FileNotFoundError):
            if not version_dir.is_dir():
                continue
            total += version_dir.lstat().st_blocks * 512
            for directory, directories, files in os.walk(version_dir):
                for entry in (*directories, *files):
                    with contextlib.suppress(FileNotFoundError):
                        total += os.lstat(os.path.join(directory, entry)).st_blocks * 512
    return total


def wait_for(condition, timeout: float, interval: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def serves_metrics(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return b"retentiond_" in b"".join(iter(lambda: connection.recv(65536), b""))
    except OSError:
        return False
