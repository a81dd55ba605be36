"""Features, the extraction queue and failures on a real SQLite file, and the extraction
an annotation queues in its own transaction."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from trainer_service.domain import Annotation, Label, Split, Strategy
from trainer_service.features.store import CANDIDATE, LABELLED, FeatureStore
from trainer_service.store.database import Database, JoinedWrite
from trainer_service.store.labels import LabelLog

LITE = {"name": "lite", "version": "1", "dimension": 2, "embedding_dimension": 1}


def annotation(annotation_id: str, item_id: str) -> Annotation:
    return Annotation(annotation_id, item_id, Label.POSITIVE, "ann", Strategy.UNCERTAIN,
                      "v0001", 1200, Split.POOL, time.time())


async def reopen(path: Path) -> FeatureStore:
    store = FeatureStore(Database(path))
    await store.restore()
    return store


async def test_pending_extractions_and_features_persist(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite3"
    store = await reopen(path)
    await store.use_extractor(LITE)
    await store.enqueue(["a", "b"], CANDIDATE)
    await store.enqueue(["b"], LABELLED)  # more urgent wins
    await store.database.close()
    store = await reopen(path)
    assert list(store.pending.items()) == [("b", LABELLED), ("a", CANDIDATE)]
    vector = bytes(range(8))
    await store.save([("b", vector)], [("a", "BAD_IMAGE")])
    assert store.pending == {} and store.bank.ids == ["b"] and store.failed == {"a": "BAD_IMAGE"}
    await store.database.close()
    reopened = await reopen(path)
    assert reopened.pending == {}
    assert reopened.bank.ids == ["b"] and reopened.bank.matrix.shape == (1, 2)
    assert reopened.failed == {"a": "BAD_IMAGE"}
    assert reopened.extractor == LITE
    assert await reopened.use_extractor({**LITE, "name": "other"}) == 1  # other features
    assert len(reopened.bank) == 0
    await reopened.database.close()


async def test_an_annotation_queues_its_extraction_in_the_same_transaction(
        tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite3"
    database = Database(path)
    log, store = LabelLog(database), FeatureStore(database)
    await log.add(annotation("a1", "x"), store.queue_with("x", LABELLED))
    # A duplicate changes nothing, a label without `queue_with` queues nothing.
    await log.add(annotation("a1", "x"), store.queue_with("x", LABELLED))
    await log.add(annotation("a2", "y"))
    assert store.pending == {"x": LABELLED} and store.queued.is_set()
    await database.close()
    assert (await reopen(path)).pending == {"x": LABELLED}


async def test_an_annotation_whose_extraction_cannot_be_queued_is_not_recorded(
        tmp_path: Path) -> None:
    database = Database(tmp_path / "labels.sqlite3")
    log = LabelLog(database)
    committed: list[bool] = []

    def broken(db: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        await log.add(annotation("a1", "x"), JoinedWrite(broken, lambda: committed.append(True)))
    assert log.current("x") is None and committed == []
    rows = sqlite3.connect(database.path).execute("SELECT count(*) FROM events").fetchone()
    assert rows == (0,)
    await database.close()


async def test_the_last_items_of_a_pool_embedded_whole_are_queued_at_once(
        tmp_path: Path) -> None:
    """Random picks alone found the last few of 200 items about once in forty tries: a
    whole dataset's last tiles waited minutes on chance."""
    from trainer_service.datasets import Catalog, Item
    from trainer_service.features.embed_plan import Retries
    from trainer_service.features.order import ExtractionOrder

    catalog = Catalog()
    catalog.add([Item(f"p{k}", f"/x/p{k}.jpg", Split.POOL) for k in range(200)])
    store = await reopen(tmp_path / "labels.sqlite3")
    await store.use_extractor(LITE)
    await store.save([(f"p{k}", bytes(8)) for k in range(194)], [("p194", "BAD_IMAGE")])
    order = ExtractionOrder(store, catalog, Retries(3, 1.0), batch=32, prefetch=200, seed=0)
    await order.top_up()
    assert set(store.pending) == {f"p{k}" for k in range(195, 200)}
    await store.save([(f"p{k}", bytes(8)) for k in range(195, 200)], [])
    await order.top_up()  # nothing left to queue
    assert store.pending == {}
    await store.database.close()
