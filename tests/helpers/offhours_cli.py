"""Running the CLI at a frozen, ticking instant for off-hours scenarios (Europe/Berlin nights)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from daemon.errors import EXIT_OK

REPO = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")


NIGHTS = "Mon-Fri 20:00-07:00 Europe/Berlin, Sat-Sun 00:00-24:00 Europe/Berlin"


# The CLI's own main(), with the clock set to argv[1] and ticking from there (timeouts keep working).
FROZEN_CLI = (
    "import sys\n"
    "from freezegun import freeze_time\n"
    "with freeze_time(sys.argv[1], tick=True):\n"
    "    from daemon.cli import main\n"
    "    code = main(sys.argv[2:])\n"
    "sys.exit(code)\n"
)


def next_wednesday(hour: int) -> datetime:
    """Return the Wednesday at least two days ahead, at ``hour`` in Berlin."""
    day = date.today() + timedelta(days=2)
    return datetime.combine(day + timedelta(days=(2 - day.weekday()) % 7), time(hour), BERLIN)


def utc(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cli_at(at: datetime, *arguments: str) -> tuple[int, str, str]:
    """Run ``retentiond ARGUMENTS`` in a subprocess whose clock starts at ``at``."""
    result = subprocess.run(
        [sys.executable, "-c", FROZEN_CLI, at.isoformat(), *arguments],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    return result.returncode, result.stdout, result.stderr


def json_at(at: datetime, *arguments: str) -> Any:
    code, stdout, stderr = cli_at(at, *arguments, "--json")
    assert code == EXIT_OK, stderr[-2000:]
    return json.loads(stdout)


def decided(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(action["action"], action["name"]) for action in result["actions"]]


def kept_reasons(result: dict[str, Any], name: str) -> list[str]:
    return [reason for kept in result["kept"] if kept["name"] == name for reason in kept["reasons"]]
