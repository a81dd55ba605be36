"""The classifier: an L2-regularised logistic regression on standardised features, with
balanced class weights and the decision threshold fixed at 0.5.

Nothing about the model is chosen on labelled data other than its training labels: the
regularisation strength and the weight given to the detector evidence are settings, and
the threshold is 0.5 (balanced class weights make it the point where both kinds of error
cost the same share of their class). So the labels that score a model (audit labels,
a validation split) never also choose it.

Features are standardised by the moments of every embedded item's features (labelled
or not: no label is read), not of the few training rows: with five labels a column's
spread over five rows is mostly noise, and every column standardised by it would weigh
like the others. The detector evidence (the last values of every feature vector) is
standardised like the rest and then multiplied by `evidence_weight`: with an L2 penalty
that is the same as penalising those few weights `evidence_weight`**2 times less, a
prior that the detector matters. With ten labels a model then already ranks like the
detector, and the embedding takes over where the labels show the detector is wrong
(`prior.py` goes further: a model from the first label, fitted around the detector).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hitl.evidence import EVIDENCE_DIM
from trainer_service.domain import Metrics

# scikit-learn is imported where used: it takes a second to import, and the service must
# report healthy without waiting for it.

# Dimensions the model weighs most: the space in which outliers are measured.
OUTLIER_DIMS = 32
MAX_ITER = 1000
# Items whose features give the standardisation (a sample where there are more).
POPULATION_ROWS = 8192


@dataclass
class LinearModel:
    """P(positive | x) = sigmoid(((x - mean) / scale) @ weight + bias)."""

    weight: np.ndarray  # (d,) over standardised features
    bias: float
    mean: np.ndarray  # (d,) standardisation, from the training labels
    scale: np.ndarray  # (d,) the evidence emphasis is folded in here
    threshold: float = 0.5

    def logit(self, x: np.ndarray) -> npt.NDArray[np.float64]:
        """The standardisation is folded into the weights so a large pool is never
        copied."""
        w = self.weight / self.scale
        b = float(self.bias - self.mean @ w)
        return np.asarray(x @ w.astype(np.float32), dtype=np.float64) + b

    def probability(self, x: np.ndarray) -> npt.NDArray[np.float64]:
        return 1.0 / (1.0 + np.exp(-self.logit(x)))

    @property
    def threshold_logit(self) -> float:
        """The threshold on the logit scale: an item is positive where its logit reaches it."""
        p = min(max(self.threshold, 1e-9), 1 - 1e-9)
        return float(np.log(p / (1 - p)))

    def outlier_dims(self) -> np.ndarray:
        influence = np.abs(self.weight)
        k = min(OUTLIER_DIMS, influence.size)
        return np.sort(np.argpartition(-influence, k - 1)[:k])

    def activations(self, x: np.ndarray, dims: np.ndarray) -> np.ndarray:
        """What the model sees of each item: the contribution of each of its most
        influential standardised features to the logit."""
        contributions: npt.NDArray[np.float32] = (
            (x[:, dims] - self.mean[dims]) / self.scale[dims] * self.weight[dims]
        ).astype(np.float32)
        return contributions

    @classmethod
    def from_arrays(cls, weight: np.ndarray, bias: np.ndarray, mean: np.ndarray,
                    scale: np.ndarray, threshold: float) -> LinearModel:
        """Also reads the earlier two-row layout (one row per class), whose positive
        logit is the difference of the rows."""
        weight, bias = np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64)
        if weight.ndim == 2:
            weight, bias = weight[1] - weight[0], bias[1] - bias[0]
        return cls(weight, float(bias), np.asarray(mean, dtype=np.float64),
                   np.asarray(scale, dtype=np.float64), float(threshold))


def standardisation(x: np.ndarray, evidence_dim: int, evidence_weight: float,
                    population: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of the training rows, or of the `population` given as its (mean,
    standard deviation), the evidence columns' scale divided by their weight; constant
    columns keep scale 1 (their standardised value is 0)."""
    if population is not None:
        mean, scale = (np.array(v, dtype=np.float64) for v in population)
    else:
        mean = x.mean(axis=0, dtype=np.float64)
        scale = x.std(axis=0, dtype=np.float64)
    scale[scale < 1e-6] = 1.0
    if evidence_dim:
        scale[-evidence_dim:] /= evidence_weight
    return mean, scale


def population_moments(matrix: np.ndarray, rows: int = POPULATION_ROWS
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard deviation) of the features of every embedded item, from at most
    `rows` of them evenly spaced: labelled or not, no label is read."""
    sample = matrix[::max(1, len(matrix) // rows)]
    return sample.mean(axis=0, dtype=np.float64), sample.std(axis=0, dtype=np.float64)


def train(x: np.ndarray, y: np.ndarray, *, c: float = 0.1, evidence_weight: float = 10.0,
          evidence_dim: int = EVIDENCE_DIM, seed: int = 0,
          population: tuple[np.ndarray, np.ndarray] | None = None) -> LinearModel:
    """A model of the labelled rows (x, y in {0, 1}); both classes must be present.
    Standardised by the `population`'s moments where given, else the rows' own."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=int)
    mean, scale = standardisation(x, min(evidence_dim, x.shape[1]), evidence_weight,
                                  population)
    z = (x - mean.astype(np.float32)) / scale.astype(np.float32)
    fitted = LogisticRegression(C=c, class_weight="balanced", max_iter=MAX_ITER,
                                random_state=seed).fit(z, y)
    return LinearModel(fitted.coef_[0].astype(np.float64), float(fitted.intercept_[0]),
                       mean, scale, 0.5)


def measure(y: np.ndarray, p: np.ndarray, threshold: float) -> Metrics:
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )
    y = np.asarray(y, dtype=int)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if len(y) == 0:
        return Metrics(threshold=threshold)
    predicted = (p >= threshold).astype(int)
    both = positives > 0 and negatives > 0
    return Metrics(
        f1=float(f1_score(y, predicted, zero_division=0)),
        precision=float(precision_score(y, predicted, zero_division=0)),
        recall=float(recall_score(y, predicted, zero_division=0)),
        roc_auc=float(roc_auc_score(y, p)) if both else 0.0,
        average_precision=float(average_precision_score(y, p)) if positives else 0.0,
        threshold=threshold, positives=positives, negatives=negatives)
