"""How noisy is the F1 of one evaluation split? The simulator checks the live score's
interval against the F1 of an evaluation split of a few hundred tiles; that F1 is
itself a sample. This trains the trainer's own model on `--labels` random pool labels
per seed, with the trainer's own splits (`stratified_split`) and audit reserve
(`in_reserve`), and gives each seed's F1 on the evaluation split, on the reserve and on
the rest of the pool: their spread over seeds is the noise of the yardstick, and their
mean difference says whether the splits differ in kind.

    python -m bench.split_noise --half tune --seeds 20
    python -m bench.split_noise --half tune --seeds 20 --evaluation-fraction 0.2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import stack
from bench.dataset import read_labelled
from bench.label_errors import embed
from bench.simulate import (
    DEFAULT_CACHE,
    DEFAULT_DATASET,
    EVALUATION_FRACTION,
    HALVES,
    half_of,
)


def trainer_splits(ids: list[str], y: np.ndarray, fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(evaluation, reserve) masks over `ids`, made as the trainer makes them: its
    stratified evaluation split, and its audit reserve (its default share) of the rest."""
    from trainer_service.config import Config
    from trainer_service.datasets.local import stratified_split
    from trainer_service.domain import Label, Split
    from trainer_service.quality.audit import in_reserve

    labelled = [(i, "", Label.POSITIVE if v else Label.NEGATIVE)
                for i, v in zip(ids, y, strict=True)]
    splits = {item.id: item.split for item in stratified_split(labelled, 0.0, fraction, seed)}
    evaluation = np.array([splits[i] == Split.EVALUATION for i in ids])
    reserve = ~evaluation & np.array([in_reserve(i, Config.audit_reserve, seed) for i in ids])
    return evaluation, reserve


def measure(x: np.ndarray, y: np.ndarray, ids: list[str], seed: int, labels: int,
            fraction: float = EVALUATION_FRACTION) -> tuple[float, float, float] | None:
    """One seed: the F1 of a model of `labels` random labels on the evaluation split, the
    audit reserve and the rest of the pool, split as the trainer splits them."""
    from trainer_service.models.classifier import measure as metrics
    from trainer_service.models.classifier import train

    evaluation, reserve = trainer_splits(ids, y, fraction, seed)
    rest = ~evaluation & ~reserve
    chosen = np.random.default_rng(seed).choice(np.flatnonzero(rest), labels, replace=False)
    if len(set(y[chosen])) < 2:
        return None
    model = train(x[chosen], y[chosen], seed=seed)
    rest[chosen] = False
    p = model.probability(x)
    return tuple(metrics(y[m], p[m], model.threshold).f1  # type: ignore[return-value]
                 for m in (evaluation, reserve, rest))


def load_vectors(dataset: Path, half: str, cache: Path) -> tuple[np.ndarray, np.ndarray,
                                                                   list[str]]:
    """The `lite` vectors, labels and ids of one half of a labelled dataset, from the
    simulator's feature cache (a feature service started on it for the while)."""
    examples = half_of(read_labelled(dataset), half)
    with tempfile.TemporaryDirectory() as work:
        feature = stack.feature_service(Path(work), cache / "features-lite").start()
        try:
            feature.wait_healthy()
            vectors = embed(feature.address, examples)
        finally:
            feature.stop()
    ids = [e.id for e in examples]
    return (np.stack([vectors[i] for i in ids]), np.array([int(e.label) for e in examples]),
            ids)


def offline_arguments(prog: str, description: str, half: str) -> argparse.ArgumentParser:
    """The arguments of the offline benches over the simulator's cached vectors."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    p.add_argument("--half", choices=["all", *HALVES], default=half)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--evaluation-fraction", type=float, default=EVALUATION_FRACTION,
                   help="the evaluation split's share, as in bench.simulate")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    return p


def main(argv: list[str] | None = None) -> int:
    p = offline_arguments("python -m bench.split_noise", __doc__, "confirm")
    p.add_argument("--labels", type=int, default=300)
    args = p.parse_args(argv)
    x, y, ids = load_vectors(args.dataset, args.half, args.cache)
    rows = [r for s in range(args.seeds) if (r := measure(x, y, ids, s, args.labels,
                                                               args.evaluation_fraction))]
    print(f"{args.half} half, {len(ids)} items, {args.labels} random labels, "
          f"evaluation split {args.evaluation_fraction:g}, "
          f"{len(rows)} seeds; F1 per seed (evaluation, reserve, rest of the pool):")
    for seed, r in enumerate(rows):
        print(f"  {seed:2d}  " + "  ".join(f"{v:.3f}" for v in r))
    for name, k in (("evaluation", 0), ("reserve", 1), ("rest", 2)):
        values = [r[k] for r in rows]
        print(f"{name:10s} mean {statistics.fmean(values):.3f} "
              f"sd {statistics.stdev(values):.3f}")
    gap = [r[1] - r[0] for r in rows]
    print(f"reserve - evaluation: mean {statistics.fmean(gap):+.3f} "
          f"sd {statistics.stdev(gap):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
