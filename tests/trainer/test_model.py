"""The linear classifier and its metrics."""

from __future__ import annotations

import numpy as np

from trainer_service.models.classifier import LinearModel, measure, standardisation, train


def blobs(n_pos: int, n_neg: int, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_pos + n_neg, d)).astype(np.float32) * 3 + 10
    y = np.array([1] * n_pos + [0] * n_neg)
    x[y == 1, :3] += 9  # separable on a few dimensions, on an offset and a scale
    return x, y


def test_training_separates_an_imbalanced_set() -> None:
    x, y = blobs(20, 400)
    x_val, y_val = blobs(20, 200, seed=1)
    model = train(x, y, evidence_dim=0)
    metrics = measure(y_val, model.probability(x_val), model.threshold)
    assert metrics.f1 > 0.8 and metrics.roc_auc > 0.95
    assert (metrics.positives, metrics.negatives) == (20, 200)
    # Standardisation is folded into the weights: same answer as standardising first.
    xs = (x_val - model.mean) / model.scale
    assert np.allclose(model.logit(x_val), xs @ model.weight + model.bias, atol=1e-3)
    # Balanced class weights: the threshold is 0.5 and is never chosen on labels.
    assert model.threshold == 0.5


def test_evidence_weight_is_a_prior_that_the_detector_matters() -> None:
    """With few labels, the evidence column (last) carries the decision when weighted;
    without the weight, noise in the many embedding columns competes with it."""
    rng = np.random.default_rng(4)
    n, d = 12, 200
    y = np.array([1] * 6 + [0] * 6)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, -1] = np.where(y == 1, 0.8, 0.1) + rng.normal(scale=0.05, size=n)
    test = rng.normal(size=(400, d)).astype(np.float32)
    truth = (rng.random(400) < 0.5).astype(int)
    test[:, -1] = np.where(truth == 1, 0.8, 0.1) + rng.normal(scale=0.05, size=400)
    weighted = train(x, y, evidence_dim=1, evidence_weight=10.0)
    plain = train(x, y, evidence_dim=1, evidence_weight=1.0)
    f1 = {name: measure(truth, m.probability(test), 0.5).f1
          for name, m in (("weighted", weighted), ("plain", plain))}
    assert f1["weighted"] > 0.95 and f1["weighted"] > f1["plain"]


def test_standardisation_folds_the_evidence_weight_into_the_scale() -> None:
    x = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]], dtype=np.float32)
    mean, scale = standardisation(x, evidence_dim=1, evidence_weight=4.0)
    assert np.allclose(mean, [1, 2, 3]) and np.allclose(scale, [1, 1, 0.25])
    constant = np.ones((5, 2), dtype=np.float32)
    assert np.allclose(standardisation(constant, 0, 1.0)[1], [1, 1])


def test_models_of_the_earlier_two_row_layout_still_load() -> None:
    weight = np.array([[0.5, -1.0], [1.5, 2.0]])
    model = LinearModel.from_arrays(weight, np.array([0.2, 0.7]), np.zeros(2), np.ones(2),
                                    0.4)
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    assert np.allclose(model.logit(x), x @ (weight[1] - weight[0]) + 0.5)
    assert model.threshold == 0.4


def test_metrics_without_positives_report_zero_auc() -> None:
    m = measure(np.array([0, 0]), np.array([0.1, 0.7]), 0.5)
    assert m.roc_auc == 0.0 and m.f1 == 0.0 and m.negatives == 2
