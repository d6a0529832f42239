"""Deployments that are local processes declared in config, such as ``bentoml serve`` on a CI agent.

Each started process is remembered in ``<state_dir>/processes-<provider>.json`` by pid and
psutil create time. That pair is the process's identity: a pid the kernel handed to some
other program since is never signalled. Processes run in a session of their own, so a
terminate reaches the workers a server forked as well as the server itself.

A deleted deployment leaves a tombstone in the state file: it disappears from ``list()``
(its declaration cannot be deleted from here) until someone restarts it by hand.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import psutil
import structlog

from daemon.provider_config import DEPLOYMENT_NAME_PATTERN, ProcessDeploymentSpec
from daemon.providers import DeploymentNotFound, ProviderError
from policies.model import Deployment

log = structlog.get_logger("retentiond")

# psutil adds /proc/stat's boot time, a whole number of seconds that can move by one when the
# clock is slewed, so the same process may show a create time one second apart between calls.
CREATE_TIME_TOLERANCE_SECONDS = 1.5
# A command that cannot start (bad flag, port taken) usually dies at once; say so instead of
# reporting a restart that did not happen.
STARTUP_CHECK_SECONDS = 0.3
KILL_WAIT_SECONDS = 5.0


# Every process this Python process started, whichever provider instance started it: polling a
# child is what reaps it, so that it neither lingers as a zombie nor makes Popen warn when collected.
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


@dataclass(frozen=True)
class ProcessRecord:
    """A process this provider started: its pid and psutil create time (seconds since the epoch)."""

    pid: int
    create_time: float

    @property
    def identity(self) -> str:
        return f"{self.pid}:{self.create_time}"

    @property
    def started_at(self) -> datetime:
        return datetime.fromtimestamp(self.create_time, timezone.utc)


@dataclass
class ProcessState:
    """The contents of the state file: running records and tombstones of deleted deployments."""

    records: dict[str, ProcessRecord]
    deleted: set[str]


class ProcessProvider:
    """Start, list and stop declared commands as detached local processes."""

    def __init__(self, *, name: str, deployments: Sequence[ProcessDeploymentSpec], state_dir: Path) -> None:
        """Keep the state of started processes in ``state_dir``. Raise ProviderError for a bad name or a duplicate."""
        if not re.fullmatch(DEPLOYMENT_NAME_PATTERN, name):
            raise ProviderError(f"provider name {name!r} cannot be used in a file name")
        self.name = name
        self.specs: dict[str, ProcessDeploymentSpec] = {}
        for spec in deployments:
            if spec.name in self.specs:
                raise ProviderError(f"deployment {spec.name!r} is declared twice")
            self.specs[spec.name] = spec
        self.state_path = state_dir / f"processes-{name}.json"
        # The scheduler may call from worker threads; a read-modify-write of the state file must not interleave.
        self._lock = threading.RLock()

    def list(self) -> list[Deployment]:
        """Return every declared deployment that was not deleted, running or terminated. Raise ProviderError."""
        with self._lock:
            state = self._load()
            return [self._describe(spec, state.records.get(spec.name)) for spec in self.specs.values() if spec.name not in state.deleted]

    def terminate(self, name: str) -> None:
        """Stop the deployment's process group: SIGTERM, then SIGKILL after ``stop_timeout_seconds``.

        Raise DeploymentNotFound if the name is neither declared nor recorded, ProviderError if it will not die.
        """
        with self._lock:
            state = self._load()
            record = state.records.get(name)
            if record is None and name not in self.specs:
                raise DeploymentNotFound(f"provider {self.name}: no deployment named {name!r}")
            if record is not None:
                self._stop(name, record, self._stop_timeout_seconds(name))

    def restart(self, name: str) -> None:
        """Start the declared command again, detached, unless it already runs. Raise DeploymentNotFound, ProviderError."""
        with self._lock:
            spec = self.specs.get(name)
            if spec is None:
                raise DeploymentNotFound(f"provider {self.name}: no deployment named {name!r} is declared")
            state = self._load()
            record = state.records.get(name)
            if record is not None:
                leader, _ = find_leader(record)
                if leader is not None:
                    return
                # Workers that outlived their server would hold its port: stop them before starting anew.
                self._stop(name, record, spec.stop_timeout_seconds)
            child, state.records[name] = self._spawn(spec)
            state.deleted.discard(name)
            self._save(state)
            self._check_started(spec, child)

    def delete(self, name: str) -> None:
        """Terminate the deployment and forget its process; ``list()`` omits it until a restart. Raise ProviderError."""
        with self._lock:
            state = self._load()
            record = state.records.get(name)
            if record is not None:
                self._stop(name, record, self._stop_timeout_seconds(name))
                del state.records[name]
            if name in self.specs:
                state.deleted.add(name)
            elif record is None:
                return
            self._save(state)

    def _stop_timeout_seconds(self, name: str) -> float:
        spec = self.specs.get(name)
        # A process recorded under a name no longer declared gets the default the spec would have given it.
        return spec.stop_timeout_seconds if spec else ProcessDeploymentSpec.model_fields["stop_timeout_seconds"].default

    def _describe(self, spec: ProcessDeploymentSpec, record: ProcessRecord | None) -> Deployment:
        if record is None:
            return Deployment(provider=self.name, name=spec.name, status="terminated", labels=dict(spec.labels))
        status = describe_status(record)
        reap_children()
        return Deployment(
            provider=self.name,
            name=spec.name,
            status=status,
            labels=dict(spec.labels),
            created_at=record.started_at,
            updated_at=record.started_at,
            identity=record.identity,
        )

    def _stop(self, name: str, record: ProcessRecord, stop_timeout_seconds: float) -> None:
        """Given a record, signal what is left of its process group and wait for it. Raise ProviderError if it survives."""
        _, members = find_processes(record)
        if not members:
            return
        send_signal(members, signal.SIGTERM)
        _, alive = psutil.wait_procs(members, timeout=stop_timeout_seconds)
        # Processes forked while we waited are in the group too.
        _, latecomers = find_processes(record)
        stubborn = {process.pid: process for process in [*alive, *latecomers]}
        if stubborn:
            log.warning("process.killed", provider=self.name, name=name, pids=sorted(stubborn))
            send_signal(list(stubborn.values()), signal.SIGKILL)
            _, alive = psutil.wait_procs(list(stubborn.values()), timeout=KILL_WAIT_SECONDS)
            if alive:
                raise ProviderError(f"provider {self.name}: {name} still runs after SIGKILL (pids {[p.pid for p in alive]})")
        reap_children()
        log.info("process.stopped", provider=self.name, name=name, pid=record.pid, killed=bool(stubborn))

    def _spawn(self, spec: ProcessDeploymentSpec) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
        """Given a spec, start its command detached and return the child and its record. Raise ProviderError if it cannot start."""
        environment = {**os.environ, **spec.env}
        try:
            with open_log(spec.log_file) as output:
                child = subprocess.Popen(
                    spec.command,
                    cwd=spec.cwd,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as error:
            raise ProviderError(f"provider {self.name}: cannot start {spec.name} ({spec.command[0]}): {error}") from error
        # Read before the child is registered: only then can nobody reap it, so even one that died at once still has it.
        record = ProcessRecord(pid=child.pid, create_time=psutil.Process(child.pid).create_time())
        with _children_lock:
            _children[child.pid] = child
        log.info("process.started", provider=self.name, name=spec.name, pid=child.pid)
        return child, record

    def _check_started(self, spec: ProcessDeploymentSpec, child: subprocess.Popen[bytes]) -> None:
        try:
            exit_code = child.wait(timeout=STARTUP_CHECK_SECONDS)
        except subprocess.TimeoutExpired:
            return
        where = f"see {spec.log_file}" if spec.log_file else "set log_file to see its output"
        raise ProviderError(f"provider {self.name}: {spec.name} exited at once with code {exit_code} ({where})")

    def _load(self) -> ProcessState:
        """Return the state file's contents, or an empty state if there is none. Raise ProviderError if it is corrupt."""
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return ProcessState(records={}, deleted=set())
        except (OSError, ValueError) as error:
            raise ProviderError(f"provider {self.name}: cannot read {self.state_path}: {error}") from error
        try:
            records = {
                name: ProcessRecord(pid=int(entry["pid"]), create_time=float(entry["create_time"]))
                for name, entry in data["processes"].items()
            }
            return ProcessState(records=records, deleted={str(name) for name in data["deleted"]})
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ProviderError(f"provider {self.name}: {self.state_path} is malformed: {error!r}") from error

    def _save(self, state: ProcessState) -> None:
        """Write the state file atomically. Raise ProviderError if it cannot be written."""
        # Imported here: daemon.config imports this module for ProcessDeploymentSpec, and
        # `check-config` should not pay for the store's imports (filelock, the scanner, PyYAML).
        from daemon.files import write_file_atomically

        data = {
            "processes": {name: {"pid": record.pid, "create_time": record.create_time} for name, record in state.records.items()},
            "deleted": sorted(state.deleted),
        }
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            write_file_atomically(self.state_path, json.dumps(data, indent=1).encode())
        except OSError as error:
            raise ProviderError(f"provider {self.name}: cannot write {self.state_path}: {error}") from error


def reap_children() -> None:
    """Reap the children of this process that have exited."""
    with _children_lock:
        for pid, child in list(_children.items()):
            if child.poll() is not None:
                del _children[pid]


def find_leader(record: ProcessRecord) -> tuple[psutil.Process | None, bool]:
    """Given a record, return its process if it still runs, and whether its pid now belongs to another process."""
    try:
        candidate = psutil.Process(record.pid)
        if abs(candidate.create_time() - record.create_time) > CREATE_TIME_TOLERANCE_SECONDS:
            return None, True
        return (candidate if is_alive(candidate) else None), False
    except psutil.NoSuchProcess:
        return None, False


def find_processes(record: ProcessRecord) -> tuple[psutil.Process | None, list[psutil.Process]]:
    """Given a record, return its leader if it still runs, and every live process of its process group.

    The group id is the leader's pid. Linux never hands out a pid that is still some group's id, so
    if a different process now holds that pid, our group is gone and the group with that id is not ours.
    """
    leader, reused = find_leader(record)
    if reused:
        return None, []
    return leader, [process for process in psutil.process_iter() if _in_group(process, record)]


def describe_status(record: ProcessRecord) -> str:
    """Given a record, return ``running``, ``terminated``, or ``unhealthy`` when only the workers it forked are left."""
    leader, reused = find_leader(record)
    if leader is not None:
        return "running"
    if reused:
        return "terminated"
    # Left-over workers still hold the port: reporting them lets off-hours terminate them.
    _, members = find_processes(record)
    return "unhealthy" if members else "terminated"


def _in_group(process: psutil.Process, record: ProcessRecord) -> bool:
    try:
        return os.getpgid(process.pid) == record.pid and is_alive(process)
    except (ProcessLookupError, psutil.Error):
        return False


def is_alive(process: psutil.Process) -> bool:
    """Return whether the process runs; a zombie, dead but not yet reaped, does not."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def send_signal(processes: Sequence[psutil.Process], signum: signal.Signals) -> None:
    """Send a signal to each process that is still the very process it was when found.

    Raise ProviderError if one of them belongs to a user we may not signal.
    """
    for process in processes:
        # psutil refuses to signal a Process object whose pid now belongs to another program.
        with suppress(psutil.NoSuchProcess):
            try:
                process.send_signal(signum)
            except psutil.AccessDenied as error:
                raise ProviderError(f"not allowed to send {signum.name} to pid {process.pid}") from error


def open_log(log_file: Path | None) -> BinaryIO:
    """Return a binary append handle on ``log_file`` (its folder created), or on /dev/null."""
    if log_file is None:
        return open(os.devnull, "wb")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    return open(log_file, "ab")
