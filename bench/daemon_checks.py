"""The daemon under ``retentiond run``: what it costs while idle, and how fast it reacts to a store over budget."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.stores import write_config
from bench.timing import environment, retentiond
from daemon.inventory import scan_store
from tests.fakestore import add_model

READY_TIMEOUT_SECONDS = 300.0
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class IdleResult:
    seconds: float
    cpu_percent: float
    peak_rss_bytes: int


@dataclass(frozen=True)
class ReactionResult:
    interval_seconds: float
    latencies: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)


def budget_config(root: Path, home: Path, budget_bytes: int, interval_seconds: int) -> Path:
    """A config with one ``[[disk]]`` budget policy checked every ``interval_seconds``."""
    policy = f'[[disk]]\nname = "budget"\nkinds = ["model"]\nmax_store_size = "{budget_bytes}B"\ncheck_interval = "{interval_seconds}s"\n'
    return write_config(root, home, policy)


def store_bytes(home: Path) -> int:
    """The store size as a disk budget counts it (disk usage of every version, as du counts it)."""
    return sum(artifact.usage_bytes for artifact in scan_store(home).artifacts)


@contextmanager
def running_daemon(config: Path, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``retentiond run`` with a notify socket, wait for READY=1, stop it with SIGTERM at the end."""
    # An abstract socket: a path under a deep temporary directory can exceed AF_UNIX's 108 bytes.
    address = f"retentiond-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + address)
    listener.settimeout(1.0)
    log = open(workdir / "daemon.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        retentiond("run", "--config", str(config)), stdout=log, stderr=subprocess.STDOUT,
        env=environment({"NOTIFY_SOCKET": "@" + address}),
    )
    try:
        _wait_ready(listener, process)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        listener.close()
        log.close()


def _wait_ready(listener: socket.socket, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"retentiond run exited {process.returncode} before READY=1")
        try:
            if b"READY=1" in listener.recv(4096).split(b"\n"):
                return
        except TimeoutError:
            continue
    raise RuntimeError("retentiond run did not send READY=1 in time")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND  # utime, stime


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def idle(root: Path, home: Path, seconds: float, interval_seconds: int) -> IdleResult:
    """Run the daemon with a generous budget (nothing to do) for ``seconds`` after READY; CPU% and peak RSS."""
    config = budget_config(root, home, store_bytes(home) * 10, interval_seconds)
    with running_daemon(config, root) as process:
        started, cpu_before = time.monotonic(), _cpu_seconds(process.pid)
        peak = _rss_bytes(process.pid)
        while (elapsed := time.monotonic() - started) < seconds:
            time.sleep(min(0.5, seconds - elapsed))
            peak = max(peak, _rss_bytes(process.pid))
        cpu = _cpu_seconds(process.pid) - cpu_before
        elapsed = time.monotonic() - started
    return IdleResult(elapsed, 100.0 * cpu / elapsed, peak)


def reaction(root: Path, home: Path, interval_seconds: int, trials: int) -> ReactionResult:
    """Push the store over its budget with one new version, ``trials`` times; each time, measure from the
    moment the version is complete until the audit log holds the first ``artifact.deleted``."""
    config = budget_config(root, home, store_bytes(home) + 4096, interval_seconds)
    audit_log = root / "audit.jsonl"
    latencies = []
    with running_daemon(config, root):
        time.sleep(interval_seconds + 0.5)  # the first check has passed and found nothing to do
        for trial in range(trials):
            offset = audit_log.stat().st_size if audit_log.exists() else 0
            add_model(home, "model-00000", f"pushed-over-{trial}", datetime.now(timezone.utc), files=2, file_bytes=4096)
            written = time.monotonic()
            latencies.append(_wait_for_deletion(audit_log, offset, timeout=interval_seconds * 4 + 120) - written)
            time.sleep(interval_seconds + 0.5)  # let the eviction run finish before the next push
    return ReactionResult(float(interval_seconds), tuple(latencies))


def _wait_for_deletion(audit_log: Path, offset: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if audit_log.exists():
            with audit_log.open("rb") as handle:
                handle.seek(offset)
                for line in handle:
                    if line.endswith(b"\n") and json.loads(line).get("event") == "artifact.deleted":
                        return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError("no artifact.deleted in the audit log in time")
