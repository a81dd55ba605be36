"""The labelled set on a real SQLite file: durability, idempotency, tombstones."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from trainer_service.domain import Annotation, Label, Split, Strategy
from trainer_service.store.database import Database
from trainer_service.store.labels import LabelLog, NotYours, UnknownAnnotation

POS, NEG = Label.POSITIVE, Label.NEGATIVE


def annotation(annotation_id: str, item_id: str, label: Label = POS, annotator: str = "ann",
               split: Split = Split.POOL) -> Annotation:
    return Annotation(annotation_id, item_id, label, annotator,
                      Strategy.UNCERTAIN, "v0001", 1200, split, time.time())


def open_log(path: Path) -> LabelLog:
    return LabelLog(Database(path))


async def test_annotations_survive_reopening(tmp_path: Path) -> None:
    log = open_log(tmp_path / "labels.sqlite3")
    await log.add(annotation("a1", "x"))
    await log.add(annotation("a2", "y", NEG))
    await log.database.close()
    reopened = open_log(tmp_path / "labels.sqlite3")
    assert [a.annotation_id for a in reopened.annotations.values()] == ["a1", "a2"]
    assert reopened.current("y").label == NEG
    assert reopened.version == 2
    mode = sqlite3.connect(tmp_path / "labels.sqlite3").execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)
    await reopened.database.close()


async def test_the_same_annotation_id_is_recorded_once(tmp_path: Path) -> None:
    log = open_log(tmp_path / "labels.sqlite3")
    first, duplicate = await log.add(annotation("a1", "x", POS))
    again, duplicate_again = await log.add(annotation("a1", "x", NEG))
    assert (duplicate, duplicate_again) == (False, True)
    assert again == first and again.label == POS
    # Concurrent retries of one id, committed in the same group, also count once.
    results = await asyncio.gather(*(log.add(annotation("a2", "y")) for _ in range(10)))
    assert sorted(d for _, d in results) == [False] + [True] * 9
    count = sqlite3.connect(log.database.path).execute("SELECT count(*) FROM events").fetchone()[0]
    assert count == 2
    await log.database.close()


async def test_many_concurrent_annotations_are_all_durable(tmp_path: Path) -> None:
    log = open_log(tmp_path / "labels.sqlite3")
    await asyncio.gather(*(log.add(annotation(f"a{k}", f"i{k}")) for k in range(200)))
    rows = sqlite3.connect(log.database.path).execute("SELECT annotation_id FROM events").fetchall()
    assert {r[0] for r in rows} == {f"a{k}" for k in range(200)}
    await log.database.close()


async def test_undo_is_a_tombstone(tmp_path: Path) -> None:
    log = open_log(tmp_path / "labels.sqlite3")
    await log.add(annotation("old", "x", NEG))
    await log.add(annotation("new", "x", POS))
    assert log.current("x").annotation_id == "new"
    undone = await log.undo("new", "ann")
    assert undone.undone and log.current("x").annotation_id == "old"
    await log.undo("old", "ann")
    assert log.current("x") is None
    with pytest.raises(UnknownAnnotation):
        await log.undo("missing", "ann")
    with pytest.raises(NotYours):
        await log.undo("old", "someone-else")
    rows = sqlite3.connect(log.database.path).execute(
        "SELECT kind FROM events ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["add", "add", "undo", "undo"]
    await log.database.close()
    reopened = open_log(tmp_path / "labels.sqlite3")
    assert reopened.current("x") is None
    assert all(a.undone for a in reopened.annotations.values())
    await reopened.database.close()


async def test_closing_checkpoints_the_wal_into_the_database(tmp_path: Path) -> None:
    log = open_log(tmp_path / "labels.sqlite3")
    await asyncio.gather(*(log.add(annotation(f"a{k}", f"i{k}")) for k in range(300)))
    await log.database.close()
    wal = tmp_path / "labels.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    rows = sqlite3.connect(log.database.path).execute("SELECT count(*) FROM events").fetchone()
    assert rows == (300,)
