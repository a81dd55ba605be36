"""The linear classifier and its metrics."""

from __future__ import annotations

import numpy as np
import pytest

from trainer_service.model import (
    balanced_epoch,
    choose_threshold,
    measure,
    train,
)


def blobs(n_pos: int, n_neg: int, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_pos + n_neg, d)).astype(np.float32) * 3 + 10
    y = np.array([1] * n_pos + [0] * n_neg)
    x[y == 1, :3] += 9  # separable on a few dimensions, on an offset and a scale
    return x, y


def test_balanced_epochs_hold_equal_classes() -> None:
    y = np.array([1] * 3 + [0] * 50)
    order = balanced_epoch(y, np.random.default_rng(0))
    assert (y[order] == 1).sum() == (y[order] == 0).sum() == 50


def test_training_separates_an_imbalanced_set() -> None:
    x, y = blobs(20, 400)
    x_val, y_val = blobs(20, 200, seed=1)
    model = train(x, y, x_val, y_val, max_epochs=20)
    metrics = measure(y_val, model.probability(x_val), model.threshold)
    assert metrics.f1 > 0.8 and metrics.roc_auc > 0.95
    assert (metrics.positives, metrics.negatives) == (20, 200)
    # Standardisation is folded into the weights: same answer as standardising first.
    xs = (x_val - model.mean) / model.scale
    direct = xs @ (model.weight[1] - model.weight[0]) + model.bias[1] - model.bias[0]
    assert np.allclose(model.logit(x_val), direct, atol=1e-3)


def test_threshold_maximises_f1() -> None:
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.35, 0.3, 0.9])
    t = choose_threshold(y, p)
    assert measure(y, p, t).f1 == max(measure(y, p, c).f1 for c in p)


def test_metrics_without_positives_report_zero_auc() -> None:
    m = measure(np.array([0, 0]), np.array([0.1, 0.7]), 0.5)
    assert m.roc_auc == 0.0 and m.f1 == 0.0 and m.negatives == 2


def test_best_f1_matches_the_threshold_search() -> None:
    from trainer_service.model import best_f1
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.1).astype(int)
    p = np.clip(rng.random(300) * 0.6 + y * 0.3, 0, 1)
    assert best_f1(y, p) == pytest.approx(measure(y, p, choose_threshold(y, p)).f1)
