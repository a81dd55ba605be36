"""Likely label errors, found by confident learning (Northcutt, Jiang and Chuang 2021, the
method of cleanlab) and sent to a second annotator.

Out-of-fold probabilities come from a cross-validated logistic regression on the labels in
force, so no label is judged by a model that saw it. Each class has a threshold: the mean
probability of that class over the items labelled with it (its self-confidence). An item
is a likely error when the likeliest class whose probability passes its threshold is not
its label; the lowest probability of the given label ranks first. (Serving only those
below a fixed probability, 0.1, looked better on random samples of the tiles but found
half as many errors in the active-learning runs of bench.label_errors, whose labels sit
near the boundary: every flagged item is served.)

The review queue serves, to anybody who has not answered or passed the item yet: items
whose two answers disagree (a third answer settles them: the majority rules, see
`answers`), then likely errors answered by one person only.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterator

import numpy as np

from hitl.background import Debounced
from trainer_service.datasets import Catalog
from trainer_service.domain import Label, Split, Strategy
from trainer_service.features.store import TaskFeatures
from trainer_service.store.labels import LabelLog

log = logging.getLogger(__name__)

FOLDS = 5
# Fewer labels of a class than this and there is nothing to cross-validate.
MIN_PER_CLASS = 2
REGULARISATION = 0.1
# Cross-validation grows with the labels (about 25 s for 7,000 on a busy 2-core box):
# after a pass that took t seconds the next waits until PACE * t have gone by, so finding
# errors never takes more than a fifth of a core from training and serving.
PACE = 5.0


def out_of_fold(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """P(positive) of every row, each from a model fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(FOLDS, int(np.bincount(y, minlength=2).min()))
    model = make_pipeline(StandardScaler(), LogisticRegression(
        C=REGULARISATION, class_weight="balanced", max_iter=1000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a fold that stops short of convergence still ranks
        warnings.simplefilter("ignore")
        # scikit-learn is untyped: the out-of-fold probabilities, one row per item.
        probabilities: np.ndarray = cross_val_predict(model, x, y, cv=cv,
                                                      method="predict_proba")
        return probabilities[:, 1]


def label_issues(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of likely label errors, most suspicious first; self-confidence of every
    row, the out-of-fold probability of its given label)."""
    y = np.asarray(y, dtype=int)
    probs = np.column_stack([1 - p, p])
    thresholds = np.asarray([probs[y == k, k].mean() if (y == k).any() else 1.0
                             for k in (0, 1)])
    above = probs >= thresholds
    confident = np.where(above, probs, -1.0).argmax(axis=1)
    self_confidence = probs[np.arange(len(y)), y]
    flagged = np.flatnonzero(above.any(axis=1) & (confident != y))
    return flagged[np.argsort(self_confidence[flagged], kind="stable")], self_confidence


def suspects(x: np.ndarray, y: np.ndarray, seed: int) -> list[tuple[int, float]]:
    """(row, suspicion in [0, 1]) of the likely label errors, most suspicious first."""
    if len(y) == 0 or np.bincount(y, minlength=2).min() < MIN_PER_CLASS:
        return []
    order, confidence = label_issues(y, out_of_fold(x, y, seed))
    return [(int(i), float(1 - confidence[i])) for i in order]


class LabelReview:
    """Keeps the likely label errors of the labels in force (recomputed in the background
    after every new model) and serves them for review."""

    def __init__(self, catalog: Catalog, labels: LabelLog, features: TaskFeatures,
                 seed: int) -> None:
        self.catalog, self.labels, self.features, self.seed = catalog, labels, features, seed
        self.suspects: list[tuple[str, float]] = []
        self._finder = Debounced(self.refresh, name="label-review", log=log, pace=PACE,
                                 failure="finding likely label errors failed")
        self._counted: tuple[int, tuple[list[str], int, int]] | None = None

    def schedule(self) -> None:
        """Recomputes soon; a request during a computation runs once more after it."""
        self._finder.schedule()

    async def close(self) -> None:
        await self._finder.close()

    async def refresh(self) -> None:
        ids, y = [], []
        bank = self.features.bank
        for item_id in list(self.labels.active):
            record = self.labels.current(item_id)
            if record is not None and record.split == Split.POOL and item_id in bank:
                ids.append(item_id)
                y.append(1 if record.label == Label.POSITIVE else 0)
        rows, matrix = bank.row_indices(ids), bank.matrix
        found = await asyncio.to_thread(
            lambda: suspects(matrix[rows], np.asarray(y, dtype=int), self.seed))
        self.suspects = [(ids[r], score) for r, score in found]
        log.info("likely label errors", extra={"labels": len(ids), "suspects": len(found)})

    # -- serving -----------------------------------------------------------------------

    def _multi(self) -> tuple[list[str], int, int]:
        """(contested items, reviewed, corrected), recounted when the log changes."""
        if self._counted is not None and self._counted[0] == self.labels.version:
            return self._counted[1]
        contested: list[str] = []
        reviewed = corrected = 0
        for item_id, ids in self.labels.active.items():
            if len(ids) < 2:
                continue
            records = self.labels.answers(item_id)
            in_force = self.labels.current(item_id)
            if in_force is None:
                contested.append(item_id)
            if any(r.strategy == Strategy.REVIEW for r in records):
                reviewed += 1
                first = next((r for r in records if r.strategy != Strategy.REVIEW), None)
                corrected += int(in_force is not None and first is not None
                                 and in_force.label != first.label)
        self._counted = (self.labels.version, (contested, reviewed, corrected))
        return self._counted[1]

    def counts(self) -> tuple[int, int, int]:
        """(reviewed, corrected, contested)."""
        contested, reviewed, corrected = self._multi()
        return reviewed, corrected, len(contested)

    def candidates(self, annotator: str) -> Iterator[tuple[str, float]]:
        """What `annotator` may be given for review, in order: contested items first."""
        passed = self.labels.passed_by(annotator)
        for item_id in self._multi()[0]:
            answered = {r.annotator for r in self.labels.answers(item_id)}
            if annotator not in answered and item_id not in passed:
                yield item_id, 1.0
        annotations = self.labels.annotations
        for item_id, score in self.suspects:
            ids = self.labels.active.get(item_id)
            if (ids and len(ids) == 1 and annotations[ids[0]].annotator != annotator
                    and item_id not in passed):
                yield item_id, score
