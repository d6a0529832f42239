"""Run commands and measure them: wall time, CPU time and peak memory of the child, medians of several runs."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable
RETENTIOND = str(Path(PYTHON).with_name("retentiond"))
BENTOML = str(Path(PYTHON).with_name("bentoml"))
GNU_TIME = shutil.which("time", path="/usr/bin:/bin")


@dataclass(frozen=True)
class Sample:
    """One run of a command: wall seconds, CPU seconds (user + system), peak RSS in bytes."""

    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int


@dataclass(frozen=True)
class Measured:
    """The samples of several runs of one command; ``median`` is the figure that is reported."""

    samples: tuple[Sample, ...]

    @property
    def median(self) -> float:
        return statistics.median(sample.wall_seconds for sample in self.samples)

    @property
    def peak_rss_bytes(self) -> int:
        return max(sample.peak_rss_bytes for sample in self.samples)


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every child: no usage tracking by BentoML, no developer config leaking in.

    Bytecode is written and used as in any installed program (``PYTHONDONTWRITEBYTECODE`` set in a
    developer's shell would make every timed run compile retentiond's modules again).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RETENTIOND_", "BENTOML_", "BENTO_CLOUD_"))}
    env["BENTOML_DO_NOT_TRACK"] = "True"
    env.pop("NOTIFY_SOCKET", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra or {})
    return env


def run_once(command: Sequence[str], *, env: Mapping[str, str] | None = None, ok_codes: tuple[int, ...] = (0,)) -> Sample:
    """Run ``command`` with its output discarded; return its Sample. Raise RuntimeError if it fails.

    Peak memory comes from GNU time when it is installed: a child forked from this (large) process
    inherits its peak in ``ru_maxrss``, a grandchild forked from ``time`` does not.
    """
    with tempfile.NamedTemporaryFile(prefix="bench-rss-") as rss_file:
        wrapped = [GNU_TIME, "-q", "-f", "%M", "-o", rss_file.name, *command] if GNU_TIME else list(command)
        started = time.perf_counter()
        process = subprocess.Popen(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment(env))
        assert process.stderr is not None
        error_output = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        if code not in ok_codes:
            raise RuntimeError(f"{' '.join(command)} exited {code}: {error_output.decode()[-2000:]}")
        peak_kib = int(Path(rss_file.name).read_text().split()[-1]) if GNU_TIME else 0
    return Sample(wall, usage.ru_utime + usage.ru_stime, peak_kib * 1024)


def measure(command: Sequence[str], runs: int, *, before: Callable[[], None] | None = None,
            env: Mapping[str, str] | None = None, ok_codes: tuple[int, ...] = (0,)) -> Measured:
    """Run ``command`` ``runs`` times (calling ``before`` ahead of each run, untimed); return all samples."""
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        samples.append(run_once(command, env=env, ok_codes=ok_codes))
    return Measured(tuple(samples))


def measure_call(function: Callable[[], object], runs: int, *, before: Callable[[], None] | None = None) -> Measured:
    """Time an in-process call ``runs`` times (peak memory is not measured in-process: 0)."""
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        started, cpu = time.perf_counter(), time.process_time()
        function()
        samples.append(Sample(time.perf_counter() - started, time.process_time() - cpu, 0))
    return Measured(tuple(samples))


def du(path: Path, runs: int) -> Measured:
    """``du -sb`` over the tree: what walking it costs the filesystem's own tool (the walk limit)."""
    return measure(["du", "-sb", str(path)], runs)


def retentiond(*arguments: str) -> list[str]:
    """The command line of the installed ``retentiond`` console script."""
    return [RETENTIOND, *arguments]
