"""The labelled set on a real SQLite file: durability, idempotency, tombstones."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from hitl.v1 import common_pb2, trainer_pb2
from trainer_service.store import Annotation, NotYours, Store, UnknownAnnotation

POS, NEG = common_pb2.LABEL_POSITIVE, common_pb2.LABEL_NEGATIVE


def annotation(annotation_id: str, item_id: str, label: int = POS, annotator: str = "ann",
               split: int = trainer_pb2.SPLIT_POOL) -> Annotation:
    return Annotation(annotation_id, item_id, label, annotator,
                      trainer_pb2.STRATEGY_UNCERTAIN, "v0001", 1200, split, time.time())


async def test_annotations_survive_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path / "labels.sqlite3")
    await store.add(annotation("a1", "x"))
    await store.add(annotation("a2", "y", NEG))
    await store.close()
    reopened = Store(tmp_path / "labels.sqlite3")
    assert [a.annotation_id for a in reopened.annotations.values()] == ["a1", "a2"]
    assert reopened.current("y").label == NEG
    assert reopened.version == 2
    mode = sqlite3.connect(tmp_path / "labels.sqlite3").execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)
    await reopened.close()


async def test_the_same_annotation_id_is_recorded_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "labels.sqlite3")
    first, duplicate = await store.add(annotation("a1", "x", POS))
    again, duplicate_again = await store.add(annotation("a1", "x", NEG))
    assert (duplicate, duplicate_again) == (False, True)
    assert again == first and again.label == POS
    # Concurrent retries of one id, committed in the same group, also count once.
    results = await asyncio.gather(*(store.add(annotation("a2", "y")) for _ in range(10)))
    assert sorted(d for _, d in results) == [False] + [True] * 9
    count = sqlite3.connect(store.path).execute("SELECT count(*) FROM events").fetchone()[0]
    assert count == 2
    await store.close()


async def test_many_concurrent_annotations_are_all_durable(tmp_path: Path) -> None:
    store = Store(tmp_path / "labels.sqlite3")
    await asyncio.gather(*(store.add(annotation(f"a{k}", f"i{k}")) for k in range(200)))
    rows = sqlite3.connect(store.path).execute("SELECT annotation_id FROM events").fetchall()
    assert {r[0] for r in rows} == {f"a{k}" for k in range(200)}
    await store.close()


async def test_undo_is_a_tombstone(tmp_path: Path) -> None:
    store = Store(tmp_path / "labels.sqlite3")
    await store.add(annotation("old", "x", NEG))
    await store.add(annotation("new", "x", POS))
    assert store.current("x").annotation_id == "new"
    undone = await store.undo("new", "ann")
    assert undone.undone and store.current("x").annotation_id == "old"
    await store.undo("old", "ann")
    assert store.current("x") is None
    with pytest.raises(UnknownAnnotation):
        await store.undo("missing", "ann")
    with pytest.raises(NotYours):
        await store.undo("old", "someone-else")
    rows = sqlite3.connect(store.path).execute("SELECT kind FROM events ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["add", "add", "undo", "undo"]
    await store.close()
    reopened = Store(tmp_path / "labels.sqlite3")
    assert reopened.current("x") is None
    assert all(a.undone for a in reopened.annotations.values())
    await reopened.close()


async def test_pending_extractions_and_features_persist(tmp_path: Path) -> None:
    store = Store(tmp_path / "labels.sqlite3")
    await store.run(Store.add_pending, [("a", 2), ("b", 2)])
    await store.run(Store.add_pending, [("b", 0)])  # more urgent wins
    assert await store.run(Store.load_pending) == [("b", 0), ("a", 2)]
    vector = bytes(range(8))
    await store.run(Store.save_features, "lite:1:2", [("b", vector)], [("a", "BAD_IMAGE")])
    await store.close()
    reopened = Store(tmp_path / "labels.sqlite3")
    assert await reopened.run(Store.load_pending) == []
    ids, matrix = await reopened.run(Store.load_features, "lite:1:2")
    assert ids == ["b"] and matrix.shape == (1, 2)
    assert await reopened.run(Store.load_failed) == {"a": "BAD_IMAGE"}
    assert (await reopened.run(Store.load_features, "other:1:2"))[0] == []
    await reopened.close()


async def test_an_annotation_queues_its_extraction_in_the_same_transaction(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "labels.sqlite3")
    await store.add(annotation("a1", "x"), extract_priority=0)
    await store.add(annotation("a1", "x"), extract_priority=0)  # duplicate: nothing new
    await store.add(annotation("a2", "y"))
    assert await store.run(Store.load_pending) == [("x", 0)]
    await store.close()


async def test_closing_checkpoints_the_wal_into_the_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "labels.sqlite3")
    await asyncio.gather(*(store.add(annotation(f"a{k}", f"i{k}")) for k in range(300)))
    await store.close()
    wal = tmp_path / "labels.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    rows = sqlite3.connect(store.path).execute("SELECT count(*) FROM events").fetchone()
    assert rows == (300,)
