"""bench.split_noise on synthetic vectors: the trainer's own splits and model, three F1s."""

from __future__ import annotations

import numpy as np

from bench import split_noise


def test_each_seed_gives_the_f1_of_the_evaluation_split_the_reserve_and_the_rest() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(int)
    x = rng.normal(size=(2000, 30)).astype(np.float32)
    x[:, -10:] += 3.0 * y[:, None]  # the evidence columns separate the classes
    ids = [f"item-{k}" for k in range(len(y))]
    found = split_noise.measure(x, y, ids, seed=1, labels=200)
    assert found is not None and all(f > 0.95 for f in found), found
    # Labels flipped at random: no split can do well.
    noise = split_noise.measure(x, rng.permutation(y), ids, seed=1, labels=200)
    assert noise is not None and max(noise) < 0.5, noise
