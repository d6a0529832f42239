"""The whole crash bench: build (or reuse) the store, run the trials on worker threads, summarise."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.crash.store import Pristine, build_pristine
from tests.crash.trials import MODES, Bench, Calibration, TrialResult


@dataclass
class Summary:
    results: list[TrialResult]
    calibration: Calibration
    planned: int
    seconds: float

    @property
    def failures(self) -> list[TrialResult]:
        return [result for result in self.results if result.failures]

    def describe(self) -> str:
        by_mode = Counter(result.mode for result in self.results)
        killed = sum(1 for result in self.results if result.killed)
        mid_run = sum(1 for r in self.results if 0 < r.vanished_after_kill < self.planned)
        lines = [
            f"store: {self.planned} planned deletions; a full run makes {self.calibration.mutations} filesystem "
            f"mutations in {self.calibration.run_seconds:.2f}s ({self.calibration.acting_seconds:.2f}s after run.started)",
            "modes: " + ", ".join(f"{mode} {by_mode[mode]}" for mode in MODES),
            f"killed before the run ended: {killed}; killed with some but not all planned versions gone: {mid_run}; "
            f"all gone: {sum(1 for r in self.results if r.vanished_after_kill == self.planned)}; "
            f"none gone: {sum(1 for r in self.results if r.vanished_after_kill == 0)}; "
            f"trash left for recovery: {sum(1 for r in self.results if r.trash_after_kill)}",
        ]
        for result in self.failures:
            lines.append(f"FAILED trial {result.number} ({result.mode} {result.parameter:g}):")
            lines.extend(f"    {failure}" for failure in result.failures)
        lines.append(f"trials: {len(self.results)}  failures: {len(self.failures)}  ({self.seconds:.0f}s)")
        return "\n".join(lines)


def run_bench(
    work: Path, trials: int, *, seed: int = 1, size: str = "full", workers: int = 2, only: int | None = None,
    pristine_home: Path | None = None, progress: bool = False,
) -> Summary:
    """Build (or reuse) the BentoML store, run the trials on ``workers`` threads, return the summary."""
    started = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    if pristine_home is None:
        pristine_home = work / "pristine" / "bentoml"
        if not (pristine_home / "models").is_dir():
            shutil.rmtree(pristine_home.parent, ignore_errors=True)
            build_pristine(pristine_home.parent, size)
    pristine = Pristine.read(pristine_home)
    numbers = [only] if only is not None else list(range(trials))
    workers = max(1, min(workers, len(numbers)))
    benches = [Bench(work / f"worker-{index}", pristine, size) for index in range(workers)]
    try:
        planned = benches[0].plan()
        calibration = benches[0].calibrate()
        results: list[TrialResult] = []
        lock = threading.Lock()

        def work_through(bench: Bench, mine: list[int]) -> None:
            for number in mine:
                result = bench.run_trial(number, seed, calibration, planned)
                with lock:
                    results.append(result)
                    if progress:
                        mark = "FAIL" if result.failures else "ok"
                        print(f"trial {number:4d} {result.mode:8s} {result.parameter:8.3f} vanished "
                              f"{result.vanished_after_kill:3d} {mark}", flush=True)

        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(work_through, bench, numbers[index::workers]) for index, bench in enumerate(benches)]
            for future in futures:
                future.result()
    finally:
        for bench in benches:
            bench.close()
    results.sort(key=lambda result: result.number)
    return Summary(results, calibration, len(planned), time.monotonic() - started)


