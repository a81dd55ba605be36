"""How good is a model on this dataset? F1, precision and recall with a 90% interval,
from labels that never trained the model and never chose it.

The labels come from a stratified sample: the population (the embedded audit reserve, a
random share of the pool, or a dataset's embedded validation items) is cut into strata
by the detector's score, which every feature vector carries and no model changes, and
within a stratum every item is equally likely to be drawn (`audit.py`). So the labels
of any stratum are a simple random sample of it, for every model, whichever model was in
use when they were drawn.

For one model, each stratum is split again by the model's decision (post-stratification:
the size of every cell is known, since every item has a score). In each cell the share
of positives gets a Beta posterior: a prior worth PRIOR_LABELS labels, centred on the
model's own probabilities after a prevalence correction fitted on the labels, updated by
the cell's labels. The population's true positives, false positives and false negatives
follow from the cells' sizes and shares; F1 = 2TP / (2TP + FP + FN). Drawing the shares
from their posteriors (and the cells' sizes from a Dirichlet, since the population is
itself a sample of all such images) gives F1's posterior, whose 5% and 95% quantiles are
the interval. Where every item is labelled (a validation split) the same computation is
the posterior of F1 on the images the split stands for.

The reference for estimating F with few labels is OASIS (Marchant & Rubinstein, 2017);
this keeps its strata and Beta-Bernoulli model, and samples uniformly within strata so
that the labels stay valid when the model changes.
"""

from __future__ import annotations

import numpy as np

from trainer_service.domain import Estimate, EstimateSource, Interval

# Detector-score cut points of the strata. Fixed, so a stratum means the same thing as
# the population grows, and coarse, so each holds enough items to sample from.
CUTS = np.array([0.05, 0.15, 0.3, 0.5, 0.7])
STRATA = len(CUTS) + 1
PRIOR_LABELS = 2.0
DRAWS = 2000  # Monte Carlo error of a 5% quantile: about 0.005 of F1
# The prevalence correction's prior: a normal on the log-odds shift, this wide, around
# the shift that makes the model's mean probability its own share of positive decisions.
SHIFT_PRIOR_SD = 1.0


def strata(detector_scores: np.ndarray) -> np.ndarray:
    """The stratum of each item, 0 (lowest scores) to STRATA - 1."""
    return np.searchsorted(CUTS, np.asarray(detector_scores, dtype=float), side="right")


def centre_shift(population_logits: np.ndarray, threshold_logit: float) -> float:
    """The log-odds shift under which the model's mean probability over the population
    equals its share of positive decisions: where a model trained with balanced classes
    would put a rare class's prevalence, before any label says otherwise."""
    logits = np.asarray(population_logits, dtype=float)
    if len(logits) == 0:
        return 0.0
    share = float(np.clip(np.mean(logits >= threshold_logit), 1e-3, 1 - 1e-3))
    shift = 0.0
    for _ in range(50):  # the mean probability rises with the shift: bisect-free Newton
        p = 1.0 / (1.0 + np.exp(-(logits + shift)))
        step = (share - p.mean()) / max(float(np.mean(p * (1 - p))), 1e-6)
        shift += float(np.clip(step, -2.0, 2.0))
        if abs(step) < 1e-6:
            break
    return shift


def prevalence_shift(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                     centre: float = 0.0) -> float:
    """The log-odds shift that best calibrates the model's probabilities on the labelled
    items (weighted to stand for the population), by Newton steps on a likelihood with a
    normal prior around `centre`. A model trained with balanced classes overstates a rare
    class; without the shift, the prior of every large cell of predicted negatives would
    expect far too many positives, and with few labels one surprise must not swing it."""
    shift = centre
    if len(labels) == 0:
        return shift
    for _ in range(25):
        p = 1.0 / (1.0 + np.exp(-(logits + shift)))
        gradient = (float(np.sum(weights * (labels - p)))
                    - (shift - centre) / SHIFT_PRIOR_SD ** 2)
        curvature = float(np.sum(weights * p * (1 - p))) + 1 / SHIFT_PRIOR_SD ** 2
        step = gradient / curvature
        shift += float(np.clip(step, -2.0, 2.0))
        if abs(step) < 1e-6:
            break
    return shift


def estimate(stratum: np.ndarray, logits: np.ndarray, threshold_logit: float,
             labelled: np.ndarray, labels: np.ndarray, source: EstimateSource,
             seed: int = 0, draws: int = DRAWS) -> Estimate | None:
    """The posterior of F1, precision and recall of the decisions `logits >=
    threshold_logit` over a population. `stratum` and `logits` hold one value per
    population item; `labelled` indexes the items whose labels (`labels`, 1 positive, 0
    negative) were drawn uniformly within their strata. None without any label."""
    labelled = np.asarray(labelled, dtype=np.int64)
    labels = np.asarray(labels, dtype=float)
    if len(labelled) == 0 or len(stratum) == 0:
        return None
    rng = np.random.default_rng(seed)
    decision = (np.asarray(logits) >= threshold_logit).astype(np.int64)
    cell = np.asarray(stratum, dtype=np.int64) * 2 + decision
    cells = 2 * STRATA
    size = np.bincount(cell, minlength=cells).astype(float)
    sampled = np.bincount(cell[labelled], minlength=cells).astype(float)
    positives = np.bincount(cell[labelled], weights=labels, minlength=cells)

    # Each label stands for size/sampled items of its stratum in the calibration fit.
    by_stratum = np.bincount(stratum, minlength=STRATA).astype(float)
    drawn = np.bincount(np.asarray(stratum)[labelled], minlength=STRATA).astype(float)
    weight = (by_stratum / np.maximum(drawn, 1))[np.asarray(stratum)[labelled]]
    weight *= len(labelled) / weight.sum()
    shift = prevalence_shift(np.asarray(logits)[labelled], labels, weight,
                             centre_shift(logits, threshold_logit))
    calibrated = 1.0 / (1.0 + np.exp(-(np.asarray(logits) + shift)))
    mean = np.bincount(cell, weights=calibrated, minlength=cells) / np.maximum(size, 1)
    mean = np.clip(mean, 1e-3, 1 - 1e-3)

    alpha = PRIOR_LABELS * mean + positives
    beta = PRIOR_LABELS * (1 - mean) + sampled - positives
    # Beta and Dirichlet draws as ratios of gamma draws (numpy's own are several times
    # slower, and the status recomputes dozens of these).
    positive = rng.standard_gamma(alpha, size=(draws, cells))
    share_positive = positive / (positive + rng.standard_gamma(beta, size=(draws, cells)))
    weight = rng.standard_gamma(size + 0.5, size=(draws, cells))
    cell_share = weight / weight.sum(axis=1, keepdims=True)
    positive_mass = cell_share * share_positive
    predicted = cell_share[:, 1::2].sum(axis=1)
    tp = positive_mass[:, 1::2].sum(axis=1)
    actual = positive_mass.sum(axis=1)
    f1 = 2 * tp / np.maximum(predicted + actual, 1e-12)
    precision = tp / np.maximum(predicted, 1e-12)
    recall = tp / np.maximum(actual, 1e-12)
    return Estimate(_interval(f1), _interval(precision), _interval(recall),
                    labels=len(labelled), population=len(stratum), source=source)


def _interval(samples: np.ndarray) -> Interval:
    low, median, high = np.quantile(samples, [0.05, 0.5, 0.95])
    return Interval(float(median), float(low), float(high))
