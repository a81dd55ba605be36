"""Near-duplicates: the incremental screen against labels agrees with the brute-force
answer and compares only what is new, and a lease never holds two near-duplicates (nor
one of an item leased to anybody)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer_service.domain import Strategy
from trainer_service.selection import near_duplicates
from trainer_service.selection.leasing import Sampler
from trainer_service.selection.near_duplicates import (
    LabelledScreen,
    LeaseGuard,
    UnitRows,
    duplicate_pairs,
    max_similarity,
    unit_rows,
)

DIMS = 64
THRESHOLD = 0.97


def features(n: int, twins: int, seed: int = 0) -> np.ndarray:
    """`n` random rows (embedding plus 10 evidence values) whose last `twins` rows are
    near-copies of the first `twins` (cosine about 0.999)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, DIMS + 10)).astype(np.float32)
    x[n - twins:, :DIMS] = x[:twins, :DIMS] + 0.03 * rng.normal(size=(twins, DIMS))
    # Identical evidence must not matter: only the embedding counts.
    x[:, DIMS:] = 0.5
    return x


def brute_keep(x: np.ndarray, candidates: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    unit = unit_rows(x, DIMS)
    best = max_similarity(unit[candidates], unit[labelled])
    return candidates[best <= THRESHOLD]


def test_the_incremental_screen_matches_the_brute_force_one() -> None:
    x = features(400, 40)
    screen = LabelledScreen(THRESHOLD)
    rng = np.random.default_rng(1)
    labelled: list[int] = []
    for step in range(6):
        labelled += rng.choice(400, 15, replace=False).tolist()
        if step == 4:
            labelled = labelled[5:]  # labels withdrawn: the screen starts again
        labelled_rows = np.asarray(sorted(set(labelled)))
        candidates = np.asarray([r for r in range(400) if r not in set(labelled)])
        kept = screen.keep(x, DIMS, candidates, labelled_rows)
        assert kept.tolist() == brute_keep(x, candidates, labelled_rows).tolist()
    # Every twin of a labelled row is out; every other candidate stays.
    twins_of_labelled = {r + 360 for r in labelled_rows if r < 40} | {
        r - 360 for r in labelled_rows if r >= 360}
    assert not twins_of_labelled & set(kept.tolist())


def test_screens_of_several_tasks_share_one_set_of_unit_embeddings() -> None:
    x = features(300, 30)
    units = UnitRows()
    first, second = LabelledScreen(THRESHOLD, units), LabelledScreen(THRESHOLD, units)
    candidates = np.arange(100, 300)
    for screen, labelled in ((first, np.arange(0, 30)), (second, np.arange(30, 100))):
        for more in (0, 10):  # then a few labels more: compared with the kept rows only
            rows = np.concatenate([labelled, candidates[:more]])
            kept = screen.keep(x, DIMS, candidates[more:], rows)
            assert kept.tolist() == brute_keep(x, candidates[more:], rows).tolist()
    # Each candidate's unit embedding was computed once, for both tasks.
    assert len(units) == len(candidates)


def test_the_pairs_found_are_the_planted_twins() -> None:
    x = features(300, 25)
    pairs = duplicate_pairs(unit_rows(x, DIMS), THRESHOLD)
    assert sorted((i, j) for i, j, _ in pairs) == [(k, 275 + k) for k in range(25)]
    assert not duplicate_pairs(unit_rows(x, DIMS), 1.0)


def test_a_lease_never_holds_two_near_duplicates_nor_one_of_a_leased_item() -> None:
    x = features(200, 60)
    ids = [f"i{k}" for k in range(200)]
    index = {item_id: k for k, item_id in enumerate(ids)}
    sampler = Sampler([("random", 1.0)], lease_s=60)
    order = np.random.default_rng(2).permutation(200)
    sampler.install({Strategy.RANDOM: [(ids[k], 0.0) for k in order]}, "v1")
    served: dict[str, list[str]] = {}
    for annotator in ("a", "b", "c", "d"):
        guard = LeaseGuard(x, index, DIMS, list(sampler.leases), THRESHOLD, 40)
        served[annotator] = [lease.item_id for lease in sampler.lease(
            annotator, 40, [], lambda _i: True, now=0, admission=guard)]
    leased = [i for batch in served.values() for i in batch]
    assert len(leased) == len(set(leased)) == 140  # 200 less one of each of the 60 twins
    unit = unit_rows(x[[index[i] for i in leased]], DIMS)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -1)
    assert sims.max() <= THRESHOLD
    # Once one of a pair is released (labelled), the other may be leased again.
    twin = next(f"i{k}" for k in range(60) if f"i{k}" in served["a"])
    sampler.release(twin)
    guard = LeaseGuard(x, index, DIMS, list(sampler.leases), THRESHOLD, 10)
    more = [lease.item_id for lease in sampler.lease("e", 10, [], lambda i: i != twin, now=1,
                                                      admission=guard)]
    assert f"i{index[twin] + 140}" in more


def test_items_without_features_are_admitted_and_a_threshold_of_one_turns_it_off() -> None:
    x = features(10, 5)
    index = {f"i{k}": k for k in range(10)}
    guard = LeaseGuard(x, index, DIMS, ["i0"], THRESHOLD, 5)
    assert guard.admits("unembedded") and not guard.admits("i5") and guard.admits("i0")
    off = LeaseGuard(x, index, DIMS, ["i0"], 1.0, 5)
    assert off.admits("i5")
    screen = LabelledScreen(1.0)
    assert screen.keep(x, DIMS, np.arange(5, 10), np.arange(5)).tolist() == [5, 6, 7, 8, 9]


def test_each_screening_compares_only_what_is_new(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the trainer's sizes the screen must stay incremental: after 25 new labels it
    compares those 25 with the known candidates, not every label again. (How long it
    takes is `python -m bench.capacity`'s near_duplicates figures.)"""
    compared: list[int] = []

    def counted(a: np.ndarray, b: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        compared.append((len(a) if rows is None else len(rows)) * len(b))
        return max_similarity(a, b, rows)

    monkeypatch.setattr(near_duplicates, "max_similarity", counted)
    x = features(10_000, 5)
    screen = LabelledScreen(THRESHOLD)
    candidates, labelled = np.arange(5_000), np.arange(5_000, 8_000)
    kept = screen.keep(x, DIMS, candidates, labelled)
    assert sum(compared) == 5_000 * 3_000
    compared.clear()
    more = np.arange(5_000, 8_025)
    again = screen.keep(x, DIMS, candidates[25:], more)
    # The 25 new labels against the 5,000 candidates known (those just labelled leave
    # the kept rows only at a compaction); none of the 4,975 is new.
    assert sum(compared) == 5_000 * 25
    assert again.tolist() == [c for c in kept.tolist() if c >= 25]
