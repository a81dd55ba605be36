"""How many more labels the target F1 likely needs, from the learning curve so far.

Learning curves of classifiers fall off roughly as a power law: the error 1 - F1 after
n labels is about A * n**-b. Fitted to the live estimates of the models trained so far
(x: every label given when each was trained), the law says where the curve crosses the
target. The fit is Bayesian and deliberately modest: the slope b has a prior (most
curves have b between 0.1 and 1) that the points sharpen as they accumulate, each point
weighs by its own interval, and the level carries the uncertainty of the newest
estimate as a whole (all points rest on the same audit labels, so their errors move
together). Drawing (A, b) from that posterior and solving for n gives the forecast's
median and 80% interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainer_service.domain import Estimate, Forecast

SLOPE_PRIOR = (0.5, 0.4)  # mean and standard deviation of b
MIN_SLOPE = 0.02  # flatter than this, the curve is not going anywhere: no upper bound
DRAWS = 4000
# Points further back than this share of the newest label count say little about the
# slope now (a curve bends), so the fit uses the recent part.
RECENT_SHARE = 0.25
MAX_F1 = 0.999
# Beyond this many times the labels so far, a forecast only says "at least".
MAX_FACTOR = 20.0
# The answers (audit answers, or verified labels) an estimate must rest on before its
# interval may call the target reached. The estimate's Beta priors (12 cells of 2 labels,
# `estimate.PRIOR_LABELS`) are centred on the model's own probabilities: below 24 answers
# the model's opinion of itself weighs more than people's answers, and a confident model
# clears the target on its own say-so. 30 is those 24 and a margin; at the default audit
# share (10%) that is about 300 labels.
MIN_ANSWERS = 30


def _log_error(f1: float) -> float:
    return float(np.log(max(1.0 - min(f1, MAX_F1), 1e-3)))


def _log_error_sd(estimate: Estimate) -> float:
    """A point's standard deviation on the log-error scale, from its 90% interval."""
    spread = _log_error(estimate.f1.low) - _log_error(estimate.f1.high)
    return max(spread / (2 * 1.645), 0.02)


def forecast(points: Sequence[tuple[int, Estimate]], target: float,
             seed: int = 0) -> Forecast | None:
    """`points`: (labels given, estimate) per model, oldest first. None without any."""
    points = [(n, e) for n, e in points if n > 0]
    if not points:
        return None
    newest_n, newest = points[-1]
    more_answers = max(0, MIN_ANSWERS - newest.labels)
    if newest.f1.low >= target and not more_answers:
        return Forecast(True, 0.0, 0.0, 0.0, len(points))
    recent = [(n, e) for n, e in points if n >= RECENT_SHARE * newest_n]
    x = np.log([n for n, _ in recent])
    y = np.array([_log_error(e.f1.value) for _, e in recent])
    sd = np.array([_log_error_sd(e) for _, e in recent])
    # Weighted least squares for (log A, b) with the prior on b; the x values are centred
    # on the newest point, so the level is the error now.
    xc = x - np.log(newest_n)
    w = 1.0 / sd ** 2
    prior_mean, prior_sd = SLOPE_PRIOR
    precision = np.array([[w.sum(), -(w * xc).sum()],
                          [-(w * xc).sum(), (w * xc ** 2).sum() + 1 / prior_sd ** 2]])
    rhs = np.array([(w * y).sum(), -(w * xc * y).sum() + prior_mean / prior_sd ** 2])
    covariance = np.linalg.inv(precision)
    mean = covariance @ rhs
    # The points' errors are shared (same audit labels): the level is no surer than
    # the newest estimate alone.
    covariance[0, 0] = max(covariance[0, 0], _log_error_sd(newest) ** 2)
    rng = np.random.default_rng(seed)
    level, slope = rng.multivariate_normal(mean, covariance, size=DRAWS).T
    target_log_error = _log_error(target)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # error(n) = exp(level - slope * log(n / newest_n)) reaches the target at:
        ratio = np.where(slope > MIN_SLOPE, (level - target_log_error) / slope, np.inf)
        more = np.where(level <= target_log_error, 0.0,
                        newest_n * (np.exp(np.minimum(ratio, 50.0)) - 1.0))
    more = np.where(np.isfinite(more), more, np.inf)
    low, median, high = np.quantile(more, [0.1, 0.5, 0.9], method="inverted_cdf")
    # Past MAX_FACTOR times the labels so far the law is extrapolated too far to say more
    # than "at least that many".
    cap = MAX_FACTOR * newest_n
    return Forecast(False, float(median) if median <= cap else -1.0, float(min(low, cap)),
                    float(high) if high <= cap else -1.0, len(points), more_answers)
