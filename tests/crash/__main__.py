"""Crash safety by fault injection: SIGKILL `retentiond apply` at random moments, then judge the store.

A store is built once with the real ``bentoml`` package (models with sub-directories,
a pinned model, a bento that references a model, an older bento, and a name whose
only save died before BentoML wrote ``latest``, which the run deletes whole, name
directory included), then copied per trial with its mtimes. Each trial kills
``retentiond apply`` in one of four ways:

    op        an audit hook in the apply process SIGKILLs it just before its k-th
              filesystem mutation (open for writing, mkdir, rename/replace, unlink,
              rmdir, chmod, flock), k uniform over all mutations of a full run
    double    like ``op``, then the recovering run is killed the same way too
    timer     SIGKILL from outside after a delay uniform over a whole run
    started   SIGKILL from outside after a delay uniform over the acting phase,
              counted from the moment ``run.started`` is in the audit log

After the kill, and again after the next normal run, the store is judged:
BentoML (Python API and its own CLI, in a long-lived judge process) lists models
and bentos and resolves every name; every ``latest`` names the newest remaining
version by creation_time; every version is whole (same files, sizes and bytes) or
absent; only planned versions are gone and each has a fsynced audit intent; no new
entry appears in the store; the store is not left locked. After the recovery run
the trash is empty, exactly the plan is gone, each version was deleted at most once,
nothing failed, and `retentiond audit verify` finds the hash chain intact.

    python -m tests.crash --trials 200            # the full figure for RELIABILITY.md
    python -m tests.crash --trials 20 --size small --workers 1
    python -m tests.crash --only 17 --seed 1      # replay one trial (same kill point while the
                                                         # code makes the same number of mutations)

Prints ``trials: N  failures: F`` and exits 1 when F > 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from tests.crash.bench import run_bench
from tests.crash.judge import judge_main
from tests.crash.store import SIZES, build_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="trials", choices=["trials", "build", "judge"])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--only", type=int, help="run just this trial number (with the same --seed)")
    parser.add_argument("--work", type=Path, help="work directory (default: a new temp dir); failed trials are kept there")
    parser.add_argument("--home", type=Path, help="for `build`: the store to create")
    parser.add_argument("--quiet", action="store_true", help="no line per trial")
    arguments = parser.parse_args(argv)
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    if arguments.command == "build":
        print(json.dumps(build_store(arguments.home, arguments.size)))
        return 0
    if arguments.command == "judge":
        judge_main()
        return 0
    work = arguments.work or Path(tempfile.mkdtemp(prefix="retentiond-crash-"))
    summary = run_bench(
        work, arguments.trials, seed=arguments.seed, size=arguments.size, workers=arguments.workers,
        only=arguments.only, progress=not arguments.quiet,
    )
    print(summary.describe())
    if summary.failures:
        print(f"failed trials are kept under {work / 'failed'}")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
