"""The trainer's active learning, replayed offline: seconds per run instead of the
simulator's minutes, for tuning over many seeds and classes.

The same parts the trainer runs, called directly on the simulator's cached vectors: its
splits and audit reserve (`split_noise.trainer_splits`), its sampler over the default
mix (`leasing.Sampler`), its queues (`ranking.rank`, `audit.next_draws`), its training
(`training.fit`, with its provisional model and the prior) and its estimator. As in the
simulator, a simulated annotator answers leases of `step` items from the dataset's
labels and a model is trained after every `step` labels; every label counts. Left out:
near-duplicates, rechecks and reviews (a single annotator is given none of the latter
before 50 answers), and the trainer's timing. So the replay ranks settings; the
simulator (`bench.simulate`) gives the figures that are reported.

    python -m bench.learner_replay --half tune --seeds 10
    python -m bench.learner_replay --half tune --positive-class Hydrant --seeds 10
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

import numpy as np

from bench import curves
from bench.split_noise import load_vectors, offline_arguments, trainer_splits

ANNOTATOR = "replay"


@dataclass
class Run:
    """One seed's replay: the labels given and the model's F1 at each checkpoint."""

    seed: int
    rows: list[dict] = field(default_factory=list)


def replay(x: np.ndarray, y: np.ndarray, ids: list[str], seed: int, *, config: object,
           budget: int = 100, step: int = 5, fraction: float = 0.5,
           strategy: str = "default") -> Run:
    """One seed of the trainer with `config` (a trainer Config) answering `budget`
    labels, a model every `step`."""
    from hitl.evidence import EVIDENCE_DIM
    from trainer_service.domain import Strategy
    from trainer_service.models.classifier import measure
    from trainer_service.models.training import enough, fit
    from trainer_service.quality import audit, estimate
    from trainer_service.selection.leasing import Sampler
    from trainer_service.selection.ranking import rank

    evaluation, reserve = trainer_splits(ids, y, fraction, seed)
    pool = np.flatnonzero(~evaluation & ~reserve)
    audited = np.flatnonzero(reserve)
    dims = x.shape[1] - EVIDENCE_DIM
    guided = bool(x[:, dims].any())  # a detector class guides the task
    stratum = estimate.strata(x[audited, dims])
    rng = np.random.default_rng(seed)
    sampler = Sampler(config.mix, config.lease_s)  # type: ignore[attr-defined]
    answers: dict[int, tuple[int, Strategy]] = {}  # row -> (label, why it was served)
    index = {item_id: k for k, item_id in enumerate(ids)}
    model = provisional = None
    run = Run(seed)
    f1 = audit.DEFAULT_F1

    def rerank() -> None:
        open_pool = np.asarray([k for k in pool if k not in answers], dtype=np.int64)
        train_rows = [k for k, (_, why) in answers.items() if why != Strategy.AUDIT]
        queues = rank(ids, x, model, x[train_rows], dims, [], rng, open_pool, provisional)
        done = np.asarray([j for j, k in enumerate(audited) if k in answers], dtype=np.int64)
        labels = np.asarray([answers[audited[j]][0] for j in done], dtype=float)
        open_rows = np.asarray([j for j, k in enumerate(audited) if k not in answers],
                               dtype=np.int64)
        logits = model.logit(x[audited]) if model is not None else None
        order = audit.next_draws(stratum, logits, model.threshold_logit if model else 0.0,
                                 done, labels, f1, open_rows, 200, rng)
        queues[Strategy.AUDIT] = [(ids[audited[j]], 0.0) for j in order]
        sampler.install(queues, "")

    rerank()
    given = 0
    while given < budget:
        leases = sampler.lease(ANNOTATOR, step - given % step, [],
                               lambda i: index[i] not in answers)
        if not leases:
            break
        for lease in leases:
            k = index[lease.item_id]
            answers[k] = (int(y[k]), lease.strategy)
            sampler.release(lease.item_id)
        given = len(answers)
        if given % step:
            continue
        train_rows = np.asarray([k for k, (_, why) in answers.items()
                                 if why != Strategy.AUDIT], dtype=np.int64)
        positives = int(y[train_rows].sum())
        if not enough(positives, len(train_rows) - positives, config, guided):  # type: ignore[arg-type]
            if model is None and 0 < positives < len(train_rows):
                provisional = fit(x, train_rows, y[train_rows], config, guided)  # type: ignore[arg-type]
                rerank()
            continue
        model, provisional = fit(x, train_rows, y[train_rows], config, guided), None  # type: ignore[arg-type]
        done = np.asarray([j for j, k in enumerate(audited) if k in answers], dtype=np.int64)
        labels = np.asarray([answers[audited[j]][0] for j in done], dtype=float)
        live = estimate.estimate(stratum, model.logit(x[audited]), model.threshold_logit,
                                 done, labels, 1, seed=seed)  # type: ignore[arg-type]
        f1 = live.f1.value if live is not None else audit.DEFAULT_F1
        scored = measure(y[evaluation], model.probability(x[evaluation]), model.threshold)
        run.rows.append({"strategy": strategy, "seed": seed, "labels": given,
                         "f1": scored.f1, "audit": len(done),
                         "estimate_f1": live.f1.value if live else "",
                         "estimate_low": live.f1.low if live else "",
                         "estimate_high": live.f1.high if live else ""})
        rerank()
    return run


def summary(runs: list[Run], budget: int, ceiling: float | None = None) -> str:
    rows = [r for run in runs for r in run.rows]
    by_run = curves.with_every_seed(curves.curves_by_run(rows), ["default"],
                                    [run.seed for run in runs])
    levels = (0.8, 0.85, 0.9) + ((round(0.95 * ceiling, 3),) if ceiling else ())
    (found,) = curves.summarise({"default": by_run["default"]}, budget, levels)
    return (", ".join(f"F1 {lv:g}: {found.reach[lv].text()}" for lv in levels)
            + f"; mean F1 (area) {found.area:.3f}")


def main(argv: list[str] | None = None) -> int:
    from trainer_service.config import Config, parse_mix, parse_prior

    p = offline_arguments("python -m bench.learner_replay", __doc__, "tune")
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--mix", default=None, help="TRAINER_MIX (default: the trainer's)")
    p.add_argument("--min-per-class", type=int, default=None)
    p.add_argument("--prior", default=None, help="TRAINER_DETECTOR_PRIOR (default: the "
                   "trainer's)")
    p.add_argument("--ceiling", type=float, default=None,
                   help="this class's full-pool F1: adds the level 95%% of it")
    args = p.parse_args(argv)
    x, y, ids = load_vectors(args.dataset, args.half, args.cache, args.positive_class,
                             args.detector_class)
    config = Config()
    if args.mix:
        config = replace(config, mix=parse_mix(args.mix))
    if args.min_per_class:
        config = replace(config, min_per_class=args.min_per_class)
    if args.prior:
        config = replace(config, detector_prior=parse_prior(args.prior))
    runs = [replay(x, y, ids, s, config=config, budget=args.budget,
                   fraction=args.evaluation_fraction) for s in range(args.seeds)]
    print(f"{args.half} half, {args.positive_class or 'label'}, {len(ids)} items "
          f"({int(y.sum())} positive), {args.seeds} seeds: "
          f"{summary(runs, args.budget, args.ceiling)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
