"""Predict when a filling disk will cross a threshold, from recent usage samples.

Estimator: the Theil–Sen line through the samples of the look-back window — the
slope is the median of the slopes between every pair of samples, the intercept
the median of ``used − slope·t``. A median ignores a few wild samples (a build
that writes and deletes a big temp file, a burst of log noise), where least
squares would be dragged by them; with at most a few hundred samples the
O(n²) pairwise slopes cost nothing. A flat or shrinking disk (slope ≤ 0) never
triggers. Too few samples, or samples spanning too short a time, predict nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from policies.model import DiskSample

MIN_SAMPLES = 5
MAX_SAMPLES = 240
# A crossing further away than this is none: a watermark above the filesystem's size would
# otherwise put it past the year 9999, where datetime overflows.
MAX_REACH = timedelta(days=100 * 365)


@dataclass(frozen=True)
class Prediction:
    """Fitted growth and when the threshold is crossed (None: not within reach)."""

    bytes_per_second: float
    crosses_at: datetime | None


def predict_crossing(
    samples: Sequence[DiskSample],
    threshold_bytes: int,
    now: datetime,
    lookback: timedelta,
    min_span: timedelta = timedelta(seconds=20),
) -> Prediction | None:
    """Given usage samples, return the fitted growth and when ``threshold_bytes`` will be crossed.

    Only samples within ``lookback`` before ``now`` are used. Return None when there are
    fewer than MIN_SAMPLES of them or they span less than ``min_span``.
    """
    window = [sample for sample in samples if now - lookback <= sample.at <= now][-MAX_SAMPLES:]
    if len(window) < MIN_SAMPLES or window[-1].at - window[0].at < min_span:
        return None
    origin = window[0].at
    points = [((sample.at - origin).total_seconds(), float(sample.used_bytes)) for sample in window]
    slopes = [
        (later_used - earlier_used) / (later_t - earlier_t)
        for index, (earlier_t, earlier_used) in enumerate(points)
        for later_t, later_used in points[index + 1 :]
        if later_t > earlier_t
    ]
    if not slopes:
        return None
    slope = median(slopes)
    intercept = median(used - slope * t for t, used in points)
    now_t = (now - origin).total_seconds()
    fitted_now = intercept + slope * now_t
    if fitted_now >= threshold_bytes:
        return Prediction(slope, now)
    if slope <= 0:
        return Prediction(slope, None)
    seconds = (threshold_bytes - fitted_now) / slope
    if seconds > MAX_REACH.total_seconds():
        return Prediction(slope, None)
    return Prediction(slope, now + timedelta(seconds=seconds))
