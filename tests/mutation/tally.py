"""Print the per-module result table of the last mutation run (tests/mutation/README.md).

Reads mutmut's ``mutants/**/*.py.meta`` files and ``tests/mutation/EQUIVALENT.md`` (a mutant listed there
counts as equivalent, not as a survivor). Run from the repository root after ``mutmut run``:

    .venv/bin/python tests/mutation/tally.py
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 36: "timeout", -24: "timeout",
          24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}
COLUMNS = ("mutants", "killed", "survived", "equivalent", "timeout", "no tests", "not checked")


def equivalents(path: Path) -> set[str]:
    """Given EQUIVALENT.md, return the mutant names it lists (``daemon.x.y__mutmut_3`` in backticks)."""
    if not path.exists():
        return set()
    return set(re.findall(r"`((?:daemon|policies)\.[^`\s]+__mutmut_\d+)`", path.read_text()))


def tally(root: Path) -> dict[str, Counter[str]]:
    listed = equivalents(root / "tests" / "mutation" / "EQUIVALENT.md")
    rows: dict[str, Counter[str]] = {}
    for meta in sorted((root / "mutants").glob("**/*.py.meta")):
        module = str(meta.relative_to(root / "mutants"))[: -len(".meta")]
        counts: Counter[str] = Counter()
        for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            status = STATUS.get(exit_code, "suspicious")
            if status == "survived" and name in listed:
                status = "equivalent"
            counts[status] += 1
            counts["mutants"] += 1
        if counts["mutants"]:
            rows[module] = counts
    return rows


def main() -> int:
    rows = tally(Path.cwd())
    total: Counter[str] = Counter()
    print("| module | " + " | ".join(COLUMNS) + " | kill rate |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for module, counts in [*rows.items(), ("total", total)]:
        if module != "total":
            total.update(counts)
        checked = counts["mutants"] - counts["not checked"] - counts["no tests"]
        judged = checked - counts["equivalent"]
        rate = f"{100 * (counts['killed'] + counts['timeout']) / judged:.1f}%" if judged else "-"
        print(f"| {module} | " + " | ".join(str(counts[column]) for column in COLUMNS) + f" | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
