"""The detector's score as a prior the labels update: a model from the first label.

Where the task's detector class is known, every vector carries its score, a probability
the detector was trained to give. Before any label the best guess is that score itself:
a logit of `slope * (score - centre)`, even odds at `centre`. The model is the usual
logistic regression (`classifier.train`: standardised features, the evidence weighted,
balanced classes, threshold 0.5) fitted around that guess instead of around zero: the
penalty pulls its weights towards the prior, not towards nothing, so one label already
makes a model that ranks and decides like the detector, and every further answer moves
it where the labels disagree. Nothing here is chosen on labelled data: `slope` and
`centre` are settings, and the answers only fit the model.

The prior is an offset on the logit, so the fitted model is still one linear model in
the standardised features (the prior folded into the score's weight and the bias), and
its file and its formula are the same as any other's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitl.evidence import SCORE
from trainer_service.models.classifier import MAX_ITER, LinearModel, standardisation

# The intercept's penalty, as an inverse strength like C: with labels of one class only,
# an unpenalised intercept would run off to call everything that class.
INTERCEPT_C = 1.0


@dataclass(frozen=True)
class DetectorPrior:
    slope: float  # logit per unit of the detector's score
    centre: float  # the score the prior calls even odds


def train_with_prior(x: np.ndarray, y: np.ndarray, prior: DetectorPrior, *, c: float,
                     evidence_weight: float, evidence_dim: int,
                     population: tuple[np.ndarray, np.ndarray] | None = None) -> LinearModel:
    """A model of the labelled rows (x, y in {0, 1}; one row is enough, of either
    class) fitted around the detector's prior; the score is the first evidence column."""
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=float)
    mean, scale = standardisation(x, min(evidence_dim, x.shape[1]), evidence_weight,
                                  population)
    z = (x - mean) / scale
    column = x.shape[1] - evidence_dim + SCORE
    offset = prior.slope * (x[:, column] - prior.centre)
    counts = np.array([len(y) - y.sum(), y.sum()])
    # Balanced classes, as classifier.train: each class weighs half of the labels.
    weight = np.where(y > 0, len(y) / (2 * max(counts[1], 1)), len(y) / (2 * max(counts[0], 1)))
    sign = 2 * y - 1

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        delta, bias = theta[:-1], theta[-1]
        margin = sign * (offset + z @ delta + bias)
        value = float(weight @ np.logaddexp(0.0, -margin)
                      + delta @ delta / (2 * c) + bias * bias / (2 * INTERCEPT_C))
        slope = -weight * sign / (1.0 + np.exp(margin))
        gradient = np.append(z.T @ slope + delta / c, slope.sum() + bias / INTERCEPT_C)
        return value, gradient

    found = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                     options={"maxiter": MAX_ITER})
    delta, bias = found.x[:-1].copy(), float(found.x[-1])
    # The prior's term, slope * (score - centre), in the standardised score.
    delta[column] += prior.slope * scale[column]
    bias += prior.slope * (mean[column] - prior.centre)
    return LinearModel(delta, bias, mean, scale, 0.5)
