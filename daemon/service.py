"""``retentiond run``: the long-running daemon under systemd (Type=notify).

The scheduler decides WHEN (cron per retention policy, an interval per disk
policy); ``policies.evaluate`` decides WHAT; ``runner.apply_once`` acts under the
store lock. The main thread keeps signals, the notify socket and the watchdog;
jobs run in APScheduler's worker threads, one at a time.
"""

from __future__ import annotations

import signal
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from types import FrameType

import structlog
from apscheduler.triggers.interval import IntervalTrigger

from daemon.config import Settings, load_config
from daemon.diskwatch import DiskWatcher
from daemon.errors import EXIT_OK, ConfigError, RetentiondError, RunInterrupted, StoreBusyError
from daemon.executor import RunResult
from daemon.fleet import observed_run
from daemon.instants import utc_now
from daemon.inventory import scan_store, store_fingerprint
from daemon.metrics import Metrics
from daemon.notify import Notifier, watchdog_interval_seconds
from daemon.observe import read_disk_usage
from daemon.runner import apply_once
from daemon.schedule import WindowTrigger, retention_trigger, scheduler_for
from daemon.state import require_writable_state_dir
from daemon.store import check_store_root
from daemon.surprises import config_surprises, offhours_surprises
from policies import Inventory
from policies.durations import format_bytes

log = structlog.get_logger("retentiond")

LOCK_WAIT_SECONDS = 30.0
METRICS_REFRESH_SECONDS = 60  # the textfile is rewritten this often (fresh disk and savings figures, a heartbeat)


class Service:
    """The daemon: owns the scheduler, the metrics, the disk watcher and the reload logic.

    Built from values (the loaded settings, the path to reload from, a clock); nothing is read or
    scanned here. ``prime`` walks the store once, ``start`` serves and schedules. Each job reads the
    clock once and runs as of that instant.
    """

    def __init__(
        self,
        settings: Settings,
        config_path: str | None,
        notifier: Notifier,
        stop: threading.Event | None = None,
        reload_requested: threading.Event | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        # A reload reads the file the daemon started with: were /etc/retentiond/config.toml to vanish,
        # the built-in defaults (no policy acts) would otherwise replace it without a word.
        self.config_argument = config_path
        self.notifier = notifier
        self.stop = stop or threading.Event()
        self.reload_requested = reload_requested or threading.Event()
        self.clock = clock
        self._run_lock = threading.Lock()
        self.metrics = Metrics(self.settings, refresh_seconds=METRICS_REFRESH_SECONDS, clock=clock)
        self.scheduler = scheduler_for(self.settings)
        self.watcher = DiskWatcher(
            read_disk=lambda: read_disk_usage(self.settings.store.home),
            scan=self._scan_store,
            fingerprint=lambda: store_fingerprint(self.settings.store.home),
        )

    @classmethod
    def load(
        cls,
        config_argument: str | None,
        notifier: Notifier,
        stop: threading.Event | None = None,
        reload_requested: threading.Event | None = None,
    ) -> Service:
        """Load and check the config, then build the service from it (nothing scanned yet).

        Raise ConfigError (exit 78) if the config, its store or its state directory cannot be used.
        """
        loaded = load_config(config_argument)
        check_store_root(loaded.settings.store.home)
        require_writable_state_dir(loaded.settings)
        config_path = str(loaded.path) if loaded.path is not None else config_argument
        return cls(loaded.settings, config_path, notifier, stop, reload_requested)

    def _scan_store(self) -> Inventory:
        inventory = scan_store(self.settings.store.home, self.settings.daemon.state_dir)
        self.metrics.record_store(inventory)
        return inventory

    def prime(self) -> None:
        """Walk the store once (its size for max_store_size, its figures for the metrics): minutes on a large one."""
        self.watcher.measure(self.clock())

    def start(self) -> None:
        """Start serving metrics, schedule the jobs, and tell systemd we are ready.

        Raise ConfigError naming the key if the metrics endpoint cannot listen (nothing is scheduled then).
        """
        metrics = self.settings.metrics
        if metrics.listen_port is not None:
            self.metrics.serve(metrics.listen_address, metrics.listen_port)
        self._schedule()
        self.scheduler.start()
        self.metrics.write_textfile()
        log.info("daemon.started", store=str(self.settings.store.home), jobs=[job.id for job in self.scheduler.get_jobs()])
        self.notifier.send("READY=1", f"STATUS=watching {self.settings.store.home}")

    def _schedule(self) -> None:
        self.scheduler.remove_all_jobs()
        for policy_name, warning in self.settings.unscheduled_warnings().items():
            log.warning("policy.unscheduled", policy=policy_name, warning=warning)
        for policy_name, warning in config_surprises(self.settings, self.clock()):
            log.warning("policy.never_acts", policy=policy_name, warning=warning)
        if self.settings.offhours:
            # Asks the providers once, in a worker thread: a slow provider must not delay READY=1.
            self.scheduler.add_job(_warn_unmatched_offhours, args=[self.settings], id="check:offhours", name="offhours match")
        for policy in self.settings.retention:
            if policy.schedule is not None:
                self.scheduler.add_job(
                    self._run_policy, retention_trigger(policy.schedule, self.settings),
                    args=[policy.name], id=f"retention:{policy.name}", name=policy.name,
                )
        for offhours in self.settings.offhours:
            reconcile = timedelta(seconds=offhours.reconcile_interval.approx_seconds())
            self.scheduler.add_job(
                self._run_policy, WindowTrigger(offhours.window, reconcile),
                args=[offhours.name], id=f"offhours:{offhours.name}", name=offhours.name,
            )
        if self.settings.metrics.textfile is not None:
            self.scheduler.add_job(
                self.metrics.write_textfile, IntervalTrigger(seconds=METRICS_REFRESH_SECONDS), id="metrics:refresh",
                name="metrics",
            )
        for disk_policy in self.settings.disk:
            self.scheduler.add_job(
                self._check_disk, IntervalTrigger(seconds=disk_policy.check_interval.approx_seconds()),
                args=[disk_policy.name], id=f"disk:{disk_policy.name}", name=disk_policy.name,
                next_run_time=self.clock(),
            )

    def serve_forever(self, each_tick: Callable[[], None] = lambda: None) -> int:
        """Run until SIGTERM/SIGINT; re-read the config on SIGHUP; call ``each_tick`` about once a second and
        once more before shutting down (the signal log). Return the exit code."""
        ping_every = watchdog_interval_seconds()
        tick = min(ping_every, 1.0) if ping_every else 1.0
        while not self.stop.wait(tick):
            each_tick()
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
            if ping_every and self.scheduler.running:
                self.notifier.send("WATCHDOG=1")
        each_tick()
        return self.shutdown()

    def shutdown(self) -> int:
        self.notifier.send("STOPPING=1")
        log.info("daemon.stopping")
        self.scheduler.shutdown(wait=True)
        self.metrics.write_textfile()
        self.metrics.close()
        log.info("daemon.stopped")
        return EXIT_OK

    def reload(self) -> None:
        """Re-read the config; keep the old one, loudly, if the new one cannot be used. Never raise.

        This is the boundary of SIGHUP: whatever goes wrong (an invalid or unreadable file, a store
        that is gone, a metrics port that is taken, a bug) is logged and the daemon runs on as it was.
        """
        try:
            self._apply_new_config()
        except Exception as error:
            text = str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
            log.error("config.reload_failed", error=text)
            self.notifier.send(f"STATUS=config reload failed; still running the previous config: {text[:200]}")
            return
        log.info("config.reloaded", jobs=[job.id for job in self.scheduler.get_jobs()])
        self.notifier.send("STATUS=config reloaded")

    def _apply_new_config(self) -> None:
        """Load, check and switch to the config file as it is now. Raise, with the old config in force, if it cannot be used."""
        settings = load_config(self.config_argument).settings
        check_store_root(settings.store.home)
        require_writable_state_dir(settings)
        old = self.settings
        endpoint, old_endpoint = _endpoint(settings), _endpoint(old)
        if endpoint != old_endpoint and endpoint is not None:
            self.metrics.serve(*endpoint)  # raises before anything changed; the old endpoint keeps serving
        with self._run_lock:
            try:
                self.settings = self.metrics.settings = settings
                self._schedule()
            except Exception:
                self.settings = self.metrics.settings = old
                self._schedule()
                if endpoint != old_endpoint:
                    self._restore_endpoint(old_endpoint)
                raise
        if endpoint is None:
            self.metrics.close()

    def _restore_endpoint(self, endpoint: tuple[str, int] | None) -> None:
        if endpoint is None:
            self.metrics.close()
            return
        try:
            self.metrics.serve(*endpoint)
        except ConfigError as error:
            log.error("metrics.serve_failed", error=str(error))

    def _run_policy(self, policy_name: str, now: datetime | None = None) -> RunResult | None:
        """A scheduled run of one policy, as of ``now`` (default: the clock, read once); every failure is
        caught here so the daemon carries on."""
        structlog.contextvars.bind_contextvars(policy=policy_name)
        at = now if now is not None else self.clock()
        try:
            with self._run_lock:
                if self.stop.is_set():
                    return None
                settings = self.settings
                result = observed_run(
                    settings, [policy_name],
                    lambda on_locked: apply_once(
                        settings, [policy_name], wait_seconds=LOCK_WAIT_SECONDS, clock=lambda: at,
                        disk_samples=list(self.watcher.samples), stop=self.stop, on_locked=on_locked,
                    ),
                    daemon=True, metrics=self.metrics,
                )
                self._after_run(result, policy_name, at)
                return result
        except StoreBusyError as error:
            log.warning("run.skipped", reason=str(error))
        except RunInterrupted as error:  # the daemon is stopping while this run waited for the lock
            log.info("run.skipped", reason=str(error))
        except RetentiondError as error:
            log.error("run.failed", error=str(error))
        except Exception:
            log.exception("run.crashed")
        finally:
            structlog.contextvars.clear_contextvars()
        return None

    def _after_run(self, result: RunResult, policy_name: str, now: datetime) -> None:
        self.watcher.after_run(result, now)
        counters = result.counters()
        self.notifier.send(
            f"STATUS=last run {policy_name}: {counters['actions_ok']} done, "
            f"{counters['actions_failed']} failed, {format_bytes(result.bytes_freed)} freed"
        )

    def _check_disk(self, policy_name: str) -> None:
        """Cheap check (one statfs, no walk): run the disk policy, as of the instant it found it must, only when it would act."""
        policy = next((p for p in self.settings.disk if p.name == policy_name), None)
        if policy is None or self.stop.is_set():
            return
        now = self.clock()
        target = self.watcher.check(policy, now)
        if target is None:
            return
        log.info("disk.triggered", policy=policy_name, triggers=list(target.triggers))
        self._run_policy(policy_name, now)


def _endpoint(settings: Settings) -> tuple[str, int] | None:
    metrics = settings.metrics
    return None if metrics.listen_port is None else (metrics.listen_address, metrics.listen_port)


def _warn_unmatched_offhours(settings: Settings) -> None:
    for policy_name, warning in offhours_surprises(settings).items():
        log.warning("policy.never_acts", policy=policy_name, warning=warning)


class DaemonSignals:
    """The daemon's signal handlers. They set events and note what came, and never log: a handler runs between
    two bytecodes of the main thread, which may be holding the log's write lock at that moment (a deadlock).
    The main loop logs the notes (``say``)."""

    IGNORED = (signal.SIGUSR1, signal.SIGUSR2)  # their default action would end the daemon

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self._notes: deque[tuple[str, str]] = deque(maxlen=64)

    def catch_reload(self) -> None:
        """SIGHUP re-reads the config; SIGUSR1/SIGUSR2 are logged and ignored."""
        signal.signal(signal.SIGHUP, self._on_reload)
        for number in self.IGNORED:
            signal.signal(number, self._on_ignored)

    def catch_stop(self) -> None:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._on_stop)

    def say(self) -> None:
        """Log the signals noted since the last call (main thread only)."""
        while self._notes:
            event, name = self._notes.popleft()
            log.info(event, signal=name)

    def _on_stop(self, number: int, _frame: FrameType | None) -> None:
        self._notes.append(("signal.received", signal.Signals(number).name))
        self.stop.set()

    def _on_reload(self, _number: int, _frame: FrameType | None) -> None:
        self.reload.set()

    def _on_ignored(self, number: int, _frame: FrameType | None) -> None:
        self._notes.append(("signal.ignored", signal.Signals(number).name))


def run_service(config_argument: str | None) -> int:
    """Entry point of ``retentiond run``. Raise ConfigError (exit 78) if the config is invalid at start."""
    signals = DaemonSignals()
    # Before the first scan, which can take minutes: SIGHUP's default action would end the process.
    # SIGTERM keeps its default until then, so that stopping a daemon still starting up is immediate.
    signals.catch_reload()
    notifier = Notifier()
    try:
        service = Service.load(config_argument, notifier, signals.stop, signals.reload)
        service.prime()
        signals.catch_stop()
        service.start()
        return service.serve_forever(signals.say)
    finally:
        notifier.close()
