"""Ranking the embedded pool into queues (uncertainty, outliers, cold start), served
through the sampler's mix; regression tests of the bugs of the demo it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from trainer_service.domain import Strategy
from trainer_service.models.classifier import LinearModel
from trainer_service.selection.leasing import Sampler
from trainer_service.selection.ranking import outlier_queue, outlier_scores, rank, uncertainty_queue

GOLD, RANDOM, UNCERTAIN, OUTLIER, COLD_START = (
    Strategy.GOLD, Strategy.RANDOM, Strategy.UNCERTAIN, Strategy.OUTLIER, Strategy.COLD_START)
MIX = (("gold", 0.1), ("random", 0.1), ("uncertain", 0.7), ("outlier", 0.1))


def always(_item_id: str) -> bool:
    return True


def identity_model(d: int, threshold: float = 0.5) -> LinearModel:
    """P(positive) = sigmoid(x[0])."""
    weight = np.zeros(d)
    weight[0] = 1.0
    return LinearModel(weight, 0.0, np.zeros(d), np.ones(d), threshold)


def test_uncertain_serves_the_most_uncertain_first() -> None:
    # The demo sorted by uncertainty and popped from the wrong end: it served the least
    # uncertain cached item.
    ids = ["far", "near", "mid", "nearest"]
    p = np.array([0.99, 0.45, 0.2, 0.5])
    queue = uncertainty_queue(ids, p, threshold=0.5)
    sampler = Sampler([("uncertain", 1.0)], lease_s=60)
    sampler.install({UNCERTAIN: queue}, "v1")
    served = [lease.item_id for lease in sampler.lease("a", 4, [], always)]
    assert served[0] == "nearest"
    assert served.index("near") < served.index("mid")
    assert served[-1] in ("far", "mid")


def test_outlier_ranking_compares_scores_not_ids() -> None:
    # The demo's outlier branch compared a float score with an item id string. Ids that
    # sort differently as strings than their scores must still come out by score.
    ids = ["9", "10", "100", "b"]
    scores = np.array([0.5, 3.0, 1.0, 2.0])
    queue = outlier_queue(ids, scores)
    assert [i for i, _ in queue] == ["10", "b", "100", "9"]
    assert all(isinstance(s, float) for _, s in queue)
    sampler = Sampler([("outlier", 1.0)], lease_s=60)
    sampler.install({OUTLIER: queue}, "v1")
    lease = sampler.lease("a", 1, [], always)[0]
    assert (lease.item_id, lease.strategy, lease.score) == ("10", OUTLIER, 3.0)


def test_outliers_are_the_items_unlike_any_labelled_one() -> None:
    # Labelled data in two tight clusters; the pool has items inside each cluster, one
    # between them (near the labelled mean, yet like no labelled item) and one far away.
    rng = np.random.default_rng(0)
    labelled = np.concatenate([rng.normal(-5, 0.1, (20, 4)), rng.normal(5, 0.1, (20, 4))])
    pool = np.array([[-5, -5, -5, -5], [5, 5, 5, 5], [0, 0, 0, 0], [30, 30, -30, 0.0]])
    scores = outlier_scores(pool, labelled)
    assert np.argsort(-scores).tolist()[:2] == [3, 2]
    assert scores[0] < 1 and scores[1] < 1


def test_uncertainty_under_imbalance_keeps_serving_positives() -> None:
    # 1,000 negatives crowd just below the threshold; a few positives sit further above
    # it. Taking turns between the sides keeps positives in every batch.
    rng = np.random.default_rng(1)
    p = np.concatenate([0.5 - rng.uniform(0, 0.01, 1000), 0.5 + rng.uniform(0.1, 0.2, 10)])
    ids = [f"n{i}" for i in range(1000)] + [f"p{i}" for i in range(10)]
    queue = uncertainty_queue(ids, p, 0.5)
    first_ten = [i for i, _ in queue[:10]]
    assert sum(i.startswith("p") for i in first_ten) == 5
    assert [i for i in first_ten if i.startswith("n")] == [
        ids[k] for k in np.argsort(np.abs(p[:1000] - 0.5))[:5]]


def test_rank_scores_every_pool_item_and_follows_the_mix() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 8)).astype(np.float32)
    ids = [f"i{k}" for k in range(500)]
    model = identity_model(8)
    queues = rank(ids, x, model, x[:20], 6, ["g1", "g2", "g3"], np.random.default_rng(0))
    assert {len(queues[s]) for s in (UNCERTAIN, OUTLIER, RANDOM)} == {500}
    best = min(queues[UNCERTAIN][:2], key=lambda e: abs(e[1] - 0.5))
    expected = np.min(np.abs(1 / (1 + np.exp(-x[:, 0].astype(float))) - 0.5))
    assert abs(best[1] - 0.5) == pytest.approx(expected)
    sampler = Sampler(MIX, lease_s=60)
    sampler.install(queues, "v7")
    leases = sampler.lease("a", 30, [], always)
    counts = {s: sum(lease.strategy == s for lease in leases) for s in (GOLD, RANDOM,
                                                                      UNCERTAIN, OUTLIER)}
    assert counts == {GOLD: 3, RANDOM: 3, UNCERTAIN: 21, OUTLIER: 3}
    assert all(lease.model_version == "v7" for lease in leases if lease.strategy != GOLD)


def test_candidate_rows_restrict_ranking_without_copying() -> None:
    x = np.arange(40, dtype=np.float32).reshape(10, 4) / 40
    ids = [str(k) for k in range(10)]
    queues = rank(ids, x, identity_model(4), x[:2], 3, [], np.random.default_rng(0),
                  candidates=np.array([2, 5, 7]))
    assert sorted(i for i, _ in queues[UNCERTAIN]) == ["2", "5", "7"]
    assert sorted(i for i, _ in queues[OUTLIER]) == ["2", "5", "7"]


def test_cold_start_alternates_detector_top_and_random() -> None:
    x = np.zeros((100, 5), dtype=np.float32)
    x[:, 3] = np.linspace(0, 1, 100)  # detector score column
    ids = [f"i{k}" for k in range(100)]
    queues = rank(ids, x, None, np.zeros((0, 5)), 3, [], np.random.default_rng(0))
    assert set(queues) == {GOLD, COLD_START, RANDOM}
    top = [queues[COLD_START][k][0] for k in (0, 2, 4)]
    assert top == ["i99", "i98", "i97"]
    sampler = Sampler(MIX, lease_s=60)
    sampler.install(queues, "")
    leases = sampler.lease("a", 9, [], always)
    # Model-based shares go to the cold start; random keeps its own (1 in 9 here: no gold).
    assert [lease.strategy for lease in leases].count(RANDOM) == 1
    assert {lease.strategy for lease in leases} == {COLD_START, RANDOM}
    assert leases[0].score == 1.0


def test_a_random_only_mix_is_random_before_the_first_model_too() -> None:
    x = np.zeros((100, 5), dtype=np.float32)
    x[:, 3] = np.linspace(0, 1, 100)
    ids = [f"i{k}" for k in range(100)]
    sampler = Sampler([("random", 1.0)], lease_s=60)
    sampler.install(rank(ids, x, None, np.zeros((0, 5)), 3, [], np.random.default_rng(0)), "")
    leases = sampler.lease("a", 20, [], always)
    assert {lease.strategy for lease in leases} == {RANDOM}
    # Not the detector's ranking: the baseline must not get the cold start's head start.
    scores = [float(x[int(lease.item_id[1:]), 3]) for lease in leases]
    assert sorted(scores, reverse=True) != scores
    assert np.mean(scores) < 0.75


def blobs(rng: np.random.Generator, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows around far-apart centres in 32 dimensions, the last one a detector score of
    zero (no detector class guides the task); the kind of each row."""
    centres = rng.normal(0, 10, (len(sizes), 32))
    kind = np.repeat(np.arange(len(sizes)), sizes)
    x = (centres[kind] + rng.normal(0, 1, (len(kind), 32))).astype(np.float32)
    x[:, 31] = 0
    return x, kind


def test_without_a_detector_the_cold_start_meets_every_kind_in_its_first_pass() -> None:
    # Twelve kinds of scene, one of them 3% of the pool. Random items would meet it
    # within 16 items about 39% of the time; one typical item per cluster always does.
    rng = np.random.default_rng(3)
    sizes = [300] * 11 + [100]
    x, kind = blobs(rng, sizes)
    ids = [f"i{k}" for k in range(len(x))]
    for seed in range(5):
        queues = rank(ids, x, None, np.zeros((0, 32)), 31, [], np.random.default_rng(seed))
        order = [int(i[1:]) for i, _ in queues[COLD_START]]
        assert sorted(order) == list(range(len(x)))
        assert set(kind[order[:16]]) == set(range(12))


def test_the_cold_start_of_candidate_rows_orders_only_those_rows() -> None:
    rng = np.random.default_rng(4)
    x, kind = blobs(rng, [200, 200, 200, 20])
    ids = [f"i{k}" for k in range(len(x))]
    candidates = np.flatnonzero(np.arange(len(x)) % 2 == 0)
    queues = rank(ids, x, None, np.zeros((0, 32)), 31, [], np.random.default_rng(0),
                  candidates=candidates)
    order = [int(i[1:]) for i, _ in queues[COLD_START]]
    assert sorted(order) == candidates.tolist()
    assert 3 in set(kind[order[:16]])
