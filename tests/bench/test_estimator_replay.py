"""bench.estimator_replay on synthetic vectors: the trainer's audit draws and estimator,
replayed offline, give checkpoints whose interval can be checked against held-out F1s."""

from __future__ import annotations

import numpy as np

from bench import estimator_replay


def _data(n: int, seed: int, separation: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    x = rng.normal(size=(n, 30)).astype(np.float32)
    x[:, -10:] += separation * y[:, None]  # the evidence columns (detector first)
    return x, y, [f"item-{k}" for k in range(n)]


def test_checkpoints_follow_the_labels_and_the_interval_describes_the_model() -> None:
    x, y, ids = _data(2000, 0, 2.0)
    points = estimator_replay.replay(x, y, ids, seed=1, fraction=0.5, budget=150, start=60)
    assert len(points) >= 5
    assert [p.labels for p in points] == sorted(p.labels for p in points)
    assert all(60 <= p.labels <= 150 for p in points)
    assert all(p.low <= p.estimate <= p.high for p in points)
    # A separable class: the model is good, and the estimate says so, near the truth.
    last = points[-1]
    assert last.evaluation_f1 > 0.8 and last.reserve_f1 > 0.8
    assert abs(last.estimate - last.evaluation_f1) < 0.15
    assert "checkpoints: the interval holds" in estimator_replay.summary(points)


def test_a_weak_signal_gives_a_low_estimate_not_a_flattering_one() -> None:
    x, y, ids = _data(2000, 0, 0.3)
    points = estimator_replay.replay(x, y, ids, seed=1, fraction=0.5, budget=150, start=60)
    assert points and max(p.evaluation_f1 for p in points) < 0.5
    assert points[-1].low < 0.5
