"""The audit reserve, and the order its items are drawn in.

Where a dataset ships no verified labels, a fixed random share of the pool (chosen by a
hash of each item's id) is set aside: those items never train and are served only as
audit items, so they stay a random sample of the dataset whatever the other strategies
pick. Annotators' answers on them give the live estimate (`estimate.py`).

Draws are stratified by the detector's score (`estimate.strata`) and uniform within a
stratum, so the answers are a simple random sample of each stratum for any model. Which
stratum gets the next draw follows the model in use: the one where one more label most
reduces the variance of F1 (Neyman allocation: a stratum's share of the population
times the spread of F1's influence in it, divided by the labels it already has). Before
the first model the strata share the draws by their size alone, so audits start with
the first answers and the first model is scored by answers already given.
"""

from __future__ import annotations

import hashlib

import numpy as np

from trainer_service.quality.estimate import PRIOR_LABELS, STRATA, centre_shift, prevalence_shift

_SALT = "hitl-audit-reserve"
# F1 assumed by the allocation before there is an estimate.
DEFAULT_F1 = 0.8


def in_reserve(item_id: str, fraction: float, seed: int) -> bool:
    """Whether an item belongs to the audit reserve: a fixed pseudo-random share of the
    pool that does not depend on file order or on the run."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{_SALT}:{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < fraction


def stratum_variances(stratum: np.ndarray, logits: np.ndarray, threshold_logit: float,
                      labelled: np.ndarray, labels: np.ndarray, f1: float) -> np.ndarray:
    """Per stratum, the spread of F1's influence function: within each cell (stratum x
    decision) a label of a predicted positive moves F1 by (1 - F1/2) per positive, one
    of a predicted negative by F1/2; the positive share of a cell is its posterior mean
    (as in `estimate.py`)."""
    decision = (logits >= threshold_logit).astype(np.int64)
    cell = stratum * 2 + decision
    cells = 2 * STRATA
    size = np.bincount(cell, minlength=cells).astype(float)
    sampled = np.bincount(cell[labelled], minlength=cells).astype(float)
    positives = np.bincount(cell[labelled], weights=labels, minlength=cells)
    shift = prevalence_shift(logits[labelled], labels, np.ones(len(labels)),
                             centre_shift(logits, threshold_logit))
    calibrated = 1.0 / (1.0 + np.exp(-(logits + shift)))
    prior = np.clip(np.bincount(cell, weights=calibrated, minlength=cells)
                    / np.maximum(size, 1), 1e-3, 1 - 1e-3)
    share = (PRIOR_LABELS * prior + positives) / (PRIOR_LABELS + sampled)
    influence = np.tile([f1 / 2, 1 - f1 / 2], STRATA) ** 2
    per_cell = size * influence * share * (1 - share)
    by_stratum = np.bincount(np.arange(cells) // 2, weights=per_cell, minlength=STRATA)
    counts = np.bincount(stratum, minlength=STRATA).astype(float)
    spread: np.ndarray = by_stratum / np.maximum(counts, 1)
    return spread


def next_draws(stratum: np.ndarray, logits: np.ndarray | None, threshold_logit: float,
               labelled: np.ndarray, labels: np.ndarray, f1: float, open_rows: np.ndarray,
               count: int, rng: np.random.Generator) -> np.ndarray:
    """The next `count` population rows to audit, given the model in use's `logits` over
    the population (None before the first model: every stratum the same spread)."""
    if logits is None:
        variances = np.ones(STRATA)
    else:
        variances = stratum_variances(stratum, logits, threshold_logit, labelled, labels, f1)
    drawn = np.bincount(stratum[labelled], minlength=STRATA)
    return draw_order(stratum, open_rows, drawn, variances, count, rng)


def draw_order(stratum: np.ndarray, open_rows: np.ndarray, labelled_per_stratum: np.ndarray,
               variances: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """The next `count` population rows to audit, in order: greedy Neyman allocation over
    strata, and within each stratum a uniformly random order of its open rows."""
    sizes = np.bincount(stratum, minlength=STRATA).astype(float)
    by_stratum = [rng.permutation(open_rows[stratum[open_rows] == h]) for h in range(STRATA)]
    taken = np.zeros(STRATA, dtype=np.int64)
    n = labelled_per_stratum.astype(float).copy()
    # A stratum with no spread yet still deserves a look: the floor keeps every stratum
    # in the allocation until its labels show it is homogeneous.
    spread = np.maximum(variances, 1e-4)
    order: list[int] = []
    while len(order) < count:
        gain = sizes ** 2 * spread / ((n + 1) * (n + 2))
        gain[[taken[h] >= len(by_stratum[h]) for h in range(STRATA)]] = -1.0
        h = int(np.argmax(gain))
        if gain[h] < 0:
            break
        order.append(int(by_stratum[h][taken[h]]))
        taken[h] += 1
        n[h] += 1
    return np.asarray(order, dtype=np.int64)
