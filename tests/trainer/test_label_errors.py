"""Confident learning on data with known flipped labels: per-class thresholds, the
ranking by self-confidence, and how many of the top suspects are real errors."""

from __future__ import annotations

import numpy as np

from trainer_service.annotators.label_errors import label_issues, suspects


def test_thresholds_are_per_class_self_confidence() -> None:
    # Labelled positive: p 0.9, 0.8, 0.3 (threshold 2/3); negative: p 0.1, 0.2, 0.7
    # (threshold of the negative class: mean 1-p = 2/3).
    y = np.array([1, 1, 1, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.3, 0.1, 0.2, 0.7])
    flagged, confidence = label_issues(y, p)
    assert list(flagged) == [2, 5]  # the positive at 0.3 (least confident) first
    assert confidence[2] == 0.3 and round(float(confidence[5]), 6) == 0.3
    # A class that is rare and weakly predicted still has its own bar: a negative at
    # p = 0.35 is a likely positive when positives average only 0.3.
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.3, 0.3, 0.35, 0.05, 0.05, 0.05, 0.05, 0.05])
    flagged, _ = label_issues(y, p)
    assert list(flagged) == [2]


def test_most_top_suspects_are_real_errors_under_class_imbalance() -> None:
    rng = np.random.default_rng(0)
    n, d = 1200, 200  # high-dimensional, like image embeddings: confident predictions
    truth = (rng.random(n) < 0.1).astype(int)
    centres = rng.normal(size=(2, d))
    x = centres[truth] * 1.5 + rng.normal(size=(n, d))
    flipped = rng.random(n) < 0.05
    given = np.where(flipped, 1 - truth, truth)
    found = suspects(x, given, seed=0)
    top = [row for row, _ in found[:30]]
    precision = float(np.mean(flipped[top]))
    recall = float(np.mean(np.isin(np.flatnonzero(flipped), [r for r, _ in found])))
    assert precision >= 0.8, precision
    assert recall >= 0.5, recall
    scores = [s for _, s in found]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_too_few_labels_of_a_class_give_no_suspects() -> None:
    x = np.random.default_rng(1).normal(size=(20, 5))
    assert suspects(x, np.array([1] + [0] * 19), seed=0) == []
    assert suspects(x[:0], np.zeros(0, dtype=int), seed=0) == []
