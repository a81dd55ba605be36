"""The stopping forecast: a power law fitted to the learning curve's live estimates."""

from __future__ import annotations

import numpy as np

from trainer_service.domain import Estimate, EstimateSource, Interval
from trainer_service.quality.forecast import forecast


def point(f1: float, half_width: float) -> Estimate:
    interval = Interval(f1, max(0.0, f1 - half_width), min(1.0, f1 + half_width))
    return Estimate(interval, interval, interval, 30, 1000, EstimateSource.AUDIT)


def curve(labels: list[int], a: float = 3.0, b: float = 0.6,
          half_width: float = 0.04) -> list[tuple[int, Estimate]]:
    """1 - F1 = a * n**-b, as learning curves roughly go."""
    return [(n, point(1 - a * n ** -b, half_width)) for n in labels]


def test_a_power_law_curve_forecasts_where_it_crosses_the_target() -> None:
    points = curve([20, 40, 60, 80, 100])
    truth = (3.0 / (1 - 0.9)) ** (1 / 0.6)  # where 1 - F1 = 0.1
    found = forecast(points, 0.9)
    assert found is not None and not found.reached and found.points == 5
    assert found.low <= truth - 100 <= found.high
    assert found.low <= found.labels <= found.high


def test_the_target_is_reached_once_the_interval_is_above_it() -> None:
    found = forecast([(50, point(0.95, 0.03))], 0.85)
    assert found is not None and found.reached and found.labels == 0


def test_a_single_point_gives_a_wide_but_bounded_forecast_or_none_above() -> None:
    found = forecast([(10, point(0.6, 0.2))], 0.85)
    assert found is not None and found.low >= 0
    assert found.high == -1 or found.high > 5 * max(found.low, 1)


def test_a_flat_curve_does_not_promise_the_target() -> None:
    flat = [(n, point(0.7, 0.02)) for n in (50, 100, 150, 200, 250, 300)]
    found = forecast(flat, 0.9)
    assert found is not None and (found.high == -1 or found.high > 1000)


def test_forecasts_of_simulated_curves_hold_the_truth_often_enough() -> None:
    """Noisy estimates of random power-law curves: the 80% interval holds where the
    curve really crosses the target in most of them."""
    rng = np.random.default_rng(0)
    held = made = 0
    for _ in range(200):
        a, b = rng.uniform(1.0, 6.0), rng.uniform(0.3, 1.0)
        crossing = (a / (1 - 0.9)) ** (1 / b)
        seen = [n for n in (10, 20, 30, 40, 60, 80) if n < crossing]
        if len(seen) < 2:
            continue
        noisy = [(n, point(float(np.clip(1 - a * n ** -b + rng.normal(0, 0.02), 0, 0.999)),
                           0.05)) for n in seen]
        found = forecast(noisy, 0.9, seed=int(rng.integers(1 << 30)))
        assert found is not None
        made += 1
        needed = crossing - seen[-1]
        held += found.low <= needed and (found.high < 0 or needed <= found.high)
    assert made > 50 and held / made >= 0.8, f"{held}/{made}"


def test_an_interval_above_the_target_on_few_answers_is_not_reached() -> None:
    """Below MIN_ANSWERS the estimate's priors (the model's own probabilities) weigh more
    than people's answers: the target waits for the answers, and says how many."""
    from trainer_service.quality.forecast import MIN_ANSWERS

    few = Estimate(Interval(0.95, 0.9, 0.98), Interval(0.95, 0.9, 0.98),
                   Interval(0.95, 0.9, 0.98), 12, 1000, EstimateSource.AUDIT)
    found = forecast([(120, few)], 0.85)
    assert found is not None and not found.reached
    assert found.more_answers == MIN_ANSWERS - 12
    enough = forecast([(300, point(0.95, 0.03))], 0.85)  # 30 answers
    assert enough is not None and enough.reached and enough.more_answers == 0
