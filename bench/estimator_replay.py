"""Does the live interval hold a held-out split's F1, and how much of a miss is the
split's own noise? This replays, offline and over many seeds, what the simulator does
through the services: the trainer's splits and audit reserve, its model, its audit
draws (`audit.draw_order`, one answer in ten) and its estimator (`estimate.estimate`),
with a simple active learner (the detector's top items and random ones first, then the
most uncertain). At every checkpoint from `--start` labels it compares the interval
with the model's F1 on the evaluation split and on the whole reserve.

Minutes, not the simulator's hour, so it can run 20 seeds against evaluation splits of
different sizes:

    python -m bench.estimator_replay --half tune --evaluation-fraction 0.2
    python -m bench.estimator_replay --half tune --evaluation-fraction 0.5
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from bench.split_noise import load_vectors, offline_arguments, trainer_splits

AUDIT_EVERY = 10  # one answer in ten is an audit answer, as in the default mix


@dataclass(frozen=True)
class Checkpoint:
    labels: int
    estimate: float
    low: float
    high: float
    evaluation_f1: float
    reserve_f1: float


def replay(x: np.ndarray, y: np.ndarray, ids: list[str], seed: int, fraction: float,
           budget: int = 300, start: int = 100) -> list[Checkpoint]:
    """One seed's checkpoints, every AUDIT_EVERY labels from `start` to `budget`."""
    from trainer_service.domain import EstimateSource
    from trainer_service.models.classifier import EVIDENCE_DIM, measure, train
    from trainer_service.quality import audit, estimate

    rng = np.random.default_rng(seed)
    evaluation, in_reserve = trainer_splits(ids, y, fraction, seed)
    rest, reserve = np.flatnonzero(~evaluation & ~in_reserve), np.flatnonzero(in_reserve)
    detector = x[:, x.shape[1] - EVIDENCE_DIM]
    stratum = estimate.strata(detector[reserve])
    by_score = rest[np.argsort(-detector[rest])]
    chosen = list(by_score[:5]) + list(rng.choice(by_score[5:], 5, replace=False))
    audited: list[int] = []  # positions in `reserve`
    out: list[Checkpoint] = []
    while (given := len(chosen) + len(audited)) < budget:
        model = train(x[chosen], y[chosen], seed=seed) if len(set(y[chosen])) == 2 else None
        if model is None:
            chosen += list(rng.choice(np.setdiff1d(rest, chosen), AUDIT_EVERY, replace=False))
            continue
        logits, threshold = model.logit(x[reserve]), model.threshold_logit
        rows = np.asarray(audited, dtype=np.int64)
        answers = y[reserve][rows].astype(float)
        found = estimate.estimate(stratum, logits, threshold, rows, answers,
                                  EstimateSource.AUDIT, seed=seed)
        if found is not None and given >= start:
            scored = [measure(y[m], model.probability(x[m]), model.threshold).f1
                      for m in (evaluation, in_reserve)]
            out.append(Checkpoint(given, found.f1.value, found.f1.low, found.f1.high, *scored))
        f1 = found.f1.value if found is not None else audit.DEFAULT_F1
        spread = audit.stratum_variances(stratum, logits, threshold, rows, answers, f1)
        drawn = np.bincount(stratum[rows], minlength=estimate.STRATA)
        open_rows = np.setdiff1d(np.arange(len(reserve)), rows)
        audited += audit.draw_order(stratum, open_rows, drawn, spread, 1, rng).tolist()
        left = np.setdiff1d(rest, chosen)
        margin = np.abs(model.logit(x[left]))
        chosen += [*left[np.argsort(margin)[:AUDIT_EVERY - 2]], int(rng.choice(left))]
    return out


def summary(points: list[Checkpoint]) -> str:
    est = np.array([p.estimate for p in points])
    low, high = np.array([p.low for p in points]), np.array([p.high for p in points])
    ev = np.array([p.evaluation_f1 for p in points])
    res = np.array([p.reserve_f1 for p in points])

    def holds(truth: np.ndarray) -> float:
        return float(np.mean((low <= truth) & (truth <= high)))

    return (f"{len(points)} checkpoints: the interval holds the evaluation F1 at "
            f"{holds(ev):.0%} and the reserve's at {holds(res):.0%} (mean width "
            f"{np.mean(high - low):.3f}); estimate - evaluation {np.mean(est - ev):+.3f}, "
            f"estimate - reserve {np.mean(est - res):+.3f}")


def main(argv: list[str] | None = None) -> int:
    args = offline_arguments("python -m bench.estimator_replay", __doc__, "tune").parse_args(argv)
    x, y, ids = load_vectors(args.dataset, args.half, args.cache)
    points = [c for s in range(args.seeds)
              for c in replay(x, y, ids, s, args.evaluation_fraction)]
    print(f"{args.half} half, {len(ids)} items, evaluation split {args.evaluation_fraction:g}, "
          f"{args.seeds} seeds: {summary(points)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
