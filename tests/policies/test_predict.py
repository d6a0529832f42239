"""predict_crossing (policies/predict.py) at its edges: which samples count, the Theil–Sen fit, flat and far disks.

Written for the mutants of the mutation run (tests/mutation/README.md) that the disk tests left alive.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from policies.model import DiskSample
from policies.predict import MAX_REACH, Prediction, predict_crossing

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
LOOKBACK = timedelta(minutes=5)


def samples(*points: tuple[float, int]) -> list[DiskSample]:
    """Samples at ``seconds`` before NOW with ``used`` bytes."""
    return [DiskSample(NOW - timedelta(seconds=seconds), used) for seconds, used in points]


def growing(seconds_before: list[float], per_second: float = 10.0) -> list[DiskSample]:
    return samples(*((ago, int(1000 + per_second * (300 - ago))) for ago in seconds_before))


def test_samples_at_both_ends_of_the_look_back_count() -> None:
    # Exactly five samples, the first exactly LOOKBACK before now and the last at now.
    prediction = predict_crossing(growing([300, 225, 150, 75, 0]), 10_000, NOW, LOOKBACK)
    assert prediction is not None and prediction.bytes_per_second == pytest.approx(10.0)


def test_four_samples_predict_nothing_however_long_they_span() -> None:
    assert predict_crossing(growing([300, 200, 100, 0]), 10_000, NOW, LOOKBACK) is None


def test_samples_spanning_exactly_the_minimum_span_predict() -> None:
    prediction = predict_crossing(growing([20, 15, 10, 5, 0]), 10_000, NOW, LOOKBACK, min_span=timedelta(seconds=20))
    assert prediction is not None


@pytest.mark.parametrize("seconds_before", [[30, 29, 28, 27, 0], [30, 3, 2, 1, 0]], ids=["last-far", "first-far"])
def test_the_span_is_from_the_first_sample_to_the_last(seconds_before: list[float]) -> None:
    assert predict_crossing(growing(seconds_before), 10_000, NOW, LOOKBACK) is not None


def test_two_samples_at_the_same_instant_are_no_slope() -> None:
    points = samples((300, 1000), (300, 1000), (200, 2000), (100, 3000), (0, 4000))
    prediction = predict_crossing(points, 10_000, NOW, LOOKBACK)
    assert prediction is not None and prediction.bytes_per_second == pytest.approx(10.0)


def test_the_slope_is_the_median_of_every_pairwise_slope() -> None:
    # Pairwise slopes of (0,0) (100,100) (200,400) (300,500) (400,1400): 1, 2, 5/3, 3.5, 3, 2, 13/3, 1, 5, 9: median 2.5.
    points = samples((400, 0), (300, 100), (200, 400), (100, 500), (0, 1400))
    prediction = predict_crossing(points, 10_000, NOW, timedelta(minutes=10))
    assert prediction is not None and prediction.bytes_per_second == pytest.approx(2.5)


def test_a_flat_disk_exactly_at_the_threshold_crosses_now() -> None:
    assert predict_crossing(samples(*((ago, 5000) for ago in (300, 200, 100, 50, 0))), 5000, NOW, LOOKBACK) == Prediction(0.0, NOW)


def test_a_flat_disk_below_the_threshold_never_crosses() -> None:
    assert predict_crossing(samples(*((ago, 4000) for ago in (300, 200, 100, 50, 0))), 5000, NOW, LOOKBACK) == Prediction(0.0, None)


def test_a_shrinking_disk_reports_its_slope_and_no_crossing() -> None:
    prediction = predict_crossing(growing([300, 200, 100, 50, 0], per_second=-1.0), 5000, NOW, LOOKBACK)
    assert prediction == Prediction(pytest.approx(-1.0), None)


def test_a_slowly_growing_disk_crosses_when_its_line_says() -> None:
    prediction = predict_crossing(growing([300, 200, 100, 50, 0], per_second=0.5), 1150 + 3600, NOW, LOOKBACK)
    assert prediction is not None and prediction.crosses_at == NOW + timedelta(hours=2)


def test_a_crossing_exactly_at_the_reach_is_predicted_and_one_beyond_is_none() -> None:
    points = growing([300, 225, 150, 75, 0], per_second=1.0)  # 1000 B at 300 s ago, 1300 B now
    reach = int(MAX_REACH.total_seconds())
    at_reach = predict_crossing(points, 1300 + reach, NOW, LOOKBACK)
    assert at_reach is not None and at_reach.crosses_at == NOW + MAX_REACH
    assert predict_crossing(points, 1300 + reach + 10, NOW, LOOKBACK) == Prediction(pytest.approx(1.0), None)
