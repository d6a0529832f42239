"""What a command imports, measured in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("rich", "pygments", "httpx", "httpcore", "anyio", "apscheduler", "tzlocal", "prometheus_client")


# argv: the heavy names joined by commas, then the command line. Runs the real CLI entry point, then
# reports its exit code, which of the heavy top-level packages it imported, and what it printed.
PROBE = """
import contextlib, io, json, sys
from daemon.cli import main
with contextlib.redirect_stdout(io.StringIO()) as output:
    try:
        code = main(sys.argv[2:])
    except SystemExit as exit:
        code = exit.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[1].split(",")))
print(json.dumps({"code": code, "heavy": heavy, "output": output.getvalue()}))
"""


def imported_by(*arguments: str, watched: tuple[str, ...] = HEAVY) -> tuple[int, list[str], str]:
    """Run ``retentiond ARGUMENTS`` in a fresh interpreter; return (exit code, watched packages imported, stdout)."""
    result = subprocess.run([sys.executable, "-c", PROBE, ",".join(watched), *arguments], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.splitlines()[-1])
    return report["code"], report["heavy"], report["output"]
