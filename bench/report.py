"""The benchmark's one table: rows of medians, ratios against same-run baselines, targets and whether they are met."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.daemon_checks import IdleResult, ReactionResult
from bench.scenarios import PlanFigures
from bench.timing import Measured

COLUMNS = ("what", "baseline", "versions", "retentiond", "baseline time", "ratio", "µs/version", "peak RSS", "target", "met")


@dataclass(frozen=True)
class Row:
    what: str
    baseline: str
    versions: int | None
    ours: str
    theirs: str = "—"
    ratio: str = "—"
    per_version: str = "—"
    peak_rss: str = "—"
    target: str = "—"
    met: bool | None = None

    @classmethod
    def compare(cls, label: str, versions: int, ours: Measured, theirs: Measured, target: str,
                check: Callable[[float], bool] | None, *, faster: bool = False) -> Row:
        """``label`` is "what | baseline"; the ratio is ours / theirs (shown as "N× faster" when ``faster``)."""
        what, _, baseline = label.partition(" | ")
        ratio = ours.median / theirs.median
        speedup = 1 / ratio if ratio else float("inf")
        shown = f"{speedup:.{0 if speedup >= 10 else 1}f}× faster" if faster and ratio < 1 else f"{ratio:.2f}×"
        return cls(what, baseline, versions, seconds(ours.median), seconds(theirs.median), shown,
                   _per_version(ours, versions), _rss(ours), target, None if check is None else check(ratio))

    @classmethod
    def single(cls, what: str, versions: int, measured: Measured, target: str, check: Callable[[float], bool]) -> Row:
        return cls(what, "—", versions, seconds(measured.median), per_version=_per_version(measured, versions),
                   target=target, met=check(measured.median))

    @classmethod
    def idle(cls, result: IdleResult, versions: int, interval_seconds: int) -> Row:
        rss_mb = result.peak_rss_bytes / 1e6
        return cls(f"daemon idle {result.seconds:.0f} s, budget check every {interval_seconds} s", "—", versions,
                   f"CPU {result.cpu_percent:.2f} %, RSS {rss_mb:.0f} MB", peak_rss=f"{rss_mb:.0f} MB",
                   target="RSS ≤ 60 MB, CPU ≤ 0.5 %", met=rss_mb <= 60 and result.cpu_percent <= 0.5)

    @classmethod
    def reaction(cls, result: ReactionResult, versions: int) -> Row:
        worst = max(result.latencies)
        return cls("over budget → first deletion audited", "check interval", versions,
                   f"median {result.median:.1f} s, max {worst:.1f} s", f"{result.interval_seconds:.0f} s",
                   f"{worst / result.interval_seconds:.2f}×", target="≤ interval + 1 s",
                   met=worst <= result.interval_seconds + 1)


def plan_rows(figures: Sequence[PlanFigures], many: PlanFigures) -> list[Row]:
    """The ``plan`` rows: cold and warm against ``du -sb`` at every size, the scan alone, the 20-files store."""
    rows = []
    last = len(figures) - 1
    for index, figure in enumerate(figures):
        target, check = ("≤ 4×", _at_most(4.0)) if index > 0 else ("— (scaling)", None)
        rows.append(Row.compare("first `plan`, no cache | `du -sb`", figure.versions, figure.first_plan, figure.du, target, check))
    for index, figure in enumerate(figures):
        target, check = ("≤ 1×", _at_most(1.0)) if index >= last - 1 else ("— (scaling)", None)
        rows.append(Row.compare("next `plan`, unchanged store | `du -sb`", figure.versions, figure.next_plan, figure.du, target, check))
    for figure in figures:
        rows.append(Row.compare("scan alone, no cache (in-process) | `du -sb`", figure.versions, figure.first_scan, figure.du, "—", None))
    for figure in figures:
        rows.append(Row.compare("scan alone, cached (in-process) | `du -sb`", figure.versions, figure.next_scan, figure.du, "—", None))
    pyyaml = figures[1] if len(figures) > 1 else figures[0]
    if pyyaml.pyyaml_scan is not None:
        rows.append(Row.compare("scan alone, no cache, PyYAML for every file (the reader before) | `du -sb`",
                                pyyaml.versions, pyyaml.pyyaml_scan, pyyaml.du, "—", None))
    rows.append(Row.compare("first `plan`, 20 files/version | `du -sb`", many.versions, many.first_plan, many.du, "≤ 4×", _at_most(4.0)))
    rows.append(Row.compare("next `plan`, 20 files/version | `du -sb`", many.versions, many.next_plan, many.du, "≤ 1×", _at_most(1.0)))
    return rows


def render(rows: Sequence[Row]) -> str:
    """Return the rows as one Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        met = "—" if row.met is None else ("yes" if row.met else "**no**")
        versions = "—" if row.versions is None else f"{row.versions:,}"
        cells = (row.what, row.baseline, versions, row.ours, row.theirs, row.ratio, row.per_version, row.peak_rss, row.target, met)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _per_version(measured: Measured, versions: int) -> str:
    return f"{measured.median / versions * 1e6:.0f}" if versions else "—"


def _rss(measured: Measured) -> str:
    return f"{measured.peak_rss_bytes / 1e6:.0f} MB" if measured.peak_rss_bytes else "—"


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda ratio: ratio <= limit
