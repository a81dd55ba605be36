"""Rechecks and agreement, on a real SQLite log: which earlier items may come back, and
each annotator's self-agreement and gold agreement (Cohen's kappa from scikit-learn)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from trainer_service.annotators.checks import Checks
from trainer_service.annotators.consistency import Rechecks, kappa
from trainer_service.datasets import Catalog, Item
from trainer_service.domain import Annotation, Label, Split, Strategy
from trainer_service.selection.leasing import Sampler
from trainer_service.store.database import Database
from trainer_service.store.labels import LabelLog

POS, NEG = Label.POSITIVE, Label.NEGATIVE


def record(aid: str, item: str, label: Label, annotator: str = "ann",
           strategy: Strategy = Strategy.RANDOM, split: Split = Split.POOL) -> Annotation:
    return Annotation(aid, item, label, annotator, strategy, "", 500, split, time.time())


def catalog() -> Catalog:
    c = Catalog()
    c.add([Item(f"p{k}", f"/x/p{k}.jpg", Split.POOL) for k in range(30)])
    c.add([Item(f"g{k}", f"/x/g{k}.jpg", Split.VALIDATION, POS if k % 2 else NEG)
           for k in range(6)])
    return c


def test_kappa_is_sklearns_and_undefined_without_variety() -> None:
    a, b = [POS, POS, NEG, NEG, POS], [POS, NEG, NEG, NEG, POS]
    assert kappa(a, b) == pytest.approx(cohen_kappa_score([int(x) for x in a],
                                                          [int(x) for x in b]))
    rng = random.Random(0)
    for n in range(2, 40):
        a = [rng.choice((POS, NEG)) for _ in range(n)]
        b = [x if rng.random() < 0.7 else rng.choice((POS, NEG)) for x in a]
        if len({*a, *b}) > 1:
            assert kappa(a, b) == pytest.approx(cohen_kappa_score(
                [int(x) for x in a], [int(x) for x in b],
                labels=[int(POS), int(NEG)]), abs=1e-12)
    assert kappa([], []) is None and kappa([NEG, NEG], [NEG, NEG]) is None
    assert kappa([POS, NEG], [POS, NEG]) == pytest.approx(1.0)
    assert kappa([POS, POS], [NEG, NEG]) == pytest.approx(0.0)  # chance explains nothing


async def test_earlier_items_come_back_after_the_gap_once_and_only_to_their_annotator(
        tmp_path: Path) -> None:
    labels = LabelLog(Database(tmp_path / "labels.sqlite3"))
    rechecks = Rechecks(cat := catalog(), labels, Checks(cat, labels), gap=5, seed=0)
    for k in range(8):
        await labels.add(record(f"a{k}", f"p{k}", POS if k % 3 == 0 else NEG))
    await labels.add(record("s", "p8", Label.SKIP))  # a pass is no answer to recheck
    await labels.add(record("b0", "p20", POS, annotator="bob"))
    eligible = {i for i, _ in rechecks.candidates("ann")}
    assert eligible == {"p0", "p1", "p2"}  # answered at least 5 answers ago
    assert list(rechecks.candidates("bob")) == []
    # The sampler gives the source its share, only while it has something to give.
    sampler = Sampler([("random", 1.0)], lease_s=60)
    sampler.install({Strategy.RANDOM: [(f"p{k}", 0.0) for k in range(10, 20)]}, "v1")
    sampler.add_source(Strategy.RECHECK, 0.25, rechecks.candidates)
    leases = sampler.lease("ann", 8, [], lambda i: i not in labels.active, now=0)
    kinds = [lease.strategy for lease in leases]
    assert kinds.count(Strategy.RECHECK) == 2 and len(leases) == 8
    again = [lease.item_id for lease in leases if lease.strategy == Strategy.RECHECK]
    assert set(again) <= eligible
    await labels.add(record("r0", again[0], NEG, strategy=Strategy.RECHECK))
    assert again[0] not in {i for i, _ in rechecks.candidates("ann")}
    await labels.database.close()


async def test_self_and_gold_agreement_per_annotator(tmp_path: Path) -> None:
    labels = LabelLog(Database(tmp_path / "labels.sqlite3"))
    rechecks = Rechecks(cat := catalog(), labels, Checks(cat, labels), gap=1, seed=0)
    first = [POS, NEG, NEG, POS, NEG]
    again = [POS, NEG, POS, POS, NEG]
    for k, label in enumerate(first):
        await labels.add(record(f"a{k}", f"p{k}", label))
    for k, label in enumerate(again):
        await labels.add(record(f"r{k}", f"p{k}", label, strategy=Strategy.RECHECK))
    for k in range(4):  # gold g0 NEG, g1 POS, g2 NEG, g3 POS; one wrong answer on g3
        await labels.add(record(f"g{k}", f"g{k}", NEG if k % 2 == 0 or k == 3 else POS,
                                split=Split.VALIDATION))
    await labels.add(record("s1", "p9", Label.SKIP))
    await labels.add(record("u1", "p10", Label.UNSURE))
    (stats,) = rechecks.stats()
    assert (stats.annotator, stats.answers, stats.skipped, stats.unsure) == ("ann", 14, 1, 1)
    assert (stats.rechecks, stats.recheck_agreements) == (5, 4)
    assert stats.self_kappa == pytest.approx(cohen_kappa_score(
        [int(x) for x in first], [int(x) for x in again]))
    assert (stats.gold_checks, stats.gold_agreements) == (4, 3)
    assert stats.gold_kappa == pytest.approx(cohen_kappa_score([2, 1, 2, 1], [2, 1, 2, 2]))
    # The repeated answers never changed what is in force.
    assert [labels.current(f"p{k}").label for k in range(5)] == first
    await labels.database.close()
