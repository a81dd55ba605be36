"""Features of items, the queue of extractions still to do, and the items that cannot be
embedded: each kept in SQLite, so a restart resumes where it stopped, and in memory.

This object is the one owner of all three: every change goes to the database and to the
in-memory view together. The database keeps each item's stored vector (the embedding and
every detector class's evidence), so it serves any task. In memory, one bank per detector
class the trainer's tasks read holds the vectors models take (the embedding and that
class's evidence, `task_evidence.task_matrix`); tasks of one class share it, and each task
sees its own through `TaskFeatures`. The extraction worker
(`extraction.py`) reads the queue and hands results back here; an annotation that needs
features queues its item's extraction in its own transaction (`queue_with`), so a
labelled item's extraction is never lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time

import numpy as np

from trainer_service.features.bank import FeatureBank
from trainer_service.features.records import ExtractorRecord
from trainer_service.features.task_evidence import Task, for_task, task_matrix
from trainer_service.store.database import Database, JoinedWrite

log = logging.getLogger(__name__)

LABELLED, KNOWN, CANDIDATE = 0, 1, 2  # extraction priorities, most urgent first
_NOT_QUEUED = 99
_AS_STORED = -2  # the bank of a record from before there were many classes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    item_id TEXT PRIMARY KEY, extractor TEXT NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    item_id TEXT PRIMARY KEY, priority INTEGER NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failed (item_id TEXT PRIMARY KEY, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# An item already queued keeps the more urgent priority.
_PENDING_UPSERT = ("INSERT INTO pending VALUES (?, ?, ?) ON CONFLICT(item_id) DO UPDATE SET "
                   "priority = min(priority, excluded.priority)")


def key_text(extractor: ExtractorRecord) -> str:
    """What stored vectors are kept under: they do not depend on the task's class."""
    stored = extractor.get("stored_dimension", extractor["dimension"])
    return (f"{extractor['name']}:{extractor['version']}:"
            f"{extractor.get('evidence_version', '')}:{stored}")


class FeatureStore:
    """What every task shares: the stored features, their queue and failures. `guide` is
    the task whose detector class the store's own `bank` and `extractor` follow (the
    default task's); `view` gives any task its own."""

    def __init__(self, database: Database, guide: Task | None = None) -> None:
        self.database = database
        database.call(lambda db: db.executescript(_SCHEMA))
        self.guide = guide or Task()
        self.pending: dict[str, int] = {}  # item id -> priority
        self.failed: dict[str, str] = {}  # item id -> reason
        self.stored: ExtractorRecord | None = None  # the stored features' record, as last described
        self._banks: dict[int, FeatureBank] = {}  # evidence row -> the vectors models take
        self._tasks: set[Task] = {self.guide}
        self._empty = FeatureBank()
        # Set whenever an extraction is queued, to wake the worker.
        self.queued = asyncio.Event()

    @property
    def extractor(self) -> ExtractorRecord | None:
        return self.record(self.guide)

    @property
    def bank(self) -> FeatureBank:
        return self.bank_of(self.guide)

    @property
    def embedding_dimension(self) -> int:
        return int(self.stored["embedding_dimension"]) if self.stored else 0

    def record(self, task: Task) -> ExtractorRecord | None:
        """The record of `task`'s features (its class's row), None before any."""
        return for_task(self.stored, task) if self.stored else None

    def _row(self, task: Task) -> int:
        record = self.record(task)
        return int(record.get("evidence_row", _AS_STORED)) if record else _AS_STORED

    def bank_of(self, task: Task) -> FeatureBank:
        """`task`'s vectors in memory, built from the database the first time a task of
        its class asks (`open_task` does it off the event loop)."""
        if self.stored is None:
            return self._empty
        self._tasks.add(task)
        row = self._row(task)
        if row not in self._banks:
            ids, matrix = self.database.call(
                lambda db: _load_features(db, key_text(self.stored or {})))
            self._banks[row] = self._derived(task, ids, matrix)
        return self._banks[row]

    def view(self, task: Task) -> TaskFeatures:
        return TaskFeatures(self, task)

    async def open_task(self, task: Task) -> TaskFeatures:
        """`task`'s view, its bank built first (a task of a class no other task reads
        costs one more bank: the embedding and that class's evidence of every item)."""
        self._tasks.add(task)
        if self.stored is not None and self._row(task) not in self._banks:
            ids, matrix = await self.database.run(_load_features, key_text(self.stored))
            self._banks.setdefault(self._row(task), self._derived(task, ids, matrix))
        return self.view(task)

    def _derived(self, task: Task, ids: list[str], stored: np.ndarray | None) -> FeatureBank:
        bank = FeatureBank()
        record = self.record(task)
        if stored is not None and record is not None:
            bank.add(ids, task_matrix(record, stored))
        return bank

    def _by_row(self) -> dict[int, Task]:
        """One task of each class the tasks read, by its evidence row."""
        return {self._row(task): task for task in self._tasks}

    async def restore(self) -> None:
        """Restores the queue, the failures and the features of the last extractor used."""
        self.pending = dict(await self.database.run(_load_pending))
        self.failed = await self.database.run(_load_failed)
        remembered = await self.database.run(_get_meta, "extractor")
        if remembered:
            self.stored = json.loads(remembered)
            await self._load_features()

    async def _load_features(self) -> None:
        assert self.stored is not None
        ids, matrix = await self.database.run(_load_features, key_text(self.stored))
        self._banks = {row: self._derived(task, ids, matrix)
                       for row, task in self._by_row().items()}
        log.info("features loaded", extra={"items": len(ids), "pending": len(self.pending),
                                           "classes_in_memory": len(self._banks)})

    async def use_extractor(self, stored: ExtractorRecord) -> int:
        """Switches to another extractor's features (`task_evidence.stored_record`): those
        of any other are dropped (they will be extracted again); returns how many were."""
        dropped = await self.database.run(_drop_features, key_text(stored))
        await self.database.run(_set_meta, "extractor", json.dumps(stored))
        self.stored = stored
        await self._load_features()
        return dropped

    def needs_features(self, item_id: str) -> bool:
        return item_id not in self.bank and item_id not in self.failed

    def _wanted(self, item_id: str, priority: int) -> bool:
        return item_id not in self.bank and self.pending.get(item_id, _NOT_QUEUED) > priority

    async def enqueue(self, item_ids: list[str], priority: int) -> None:
        """Queues items for extraction (persisted first); known or failed ones are skipped."""
        todo = [(i, priority) for i in item_ids
                if i not in self.failed and self._wanted(i, priority)]
        if not todo:
            return
        now = time.time()
        await self.database.run(_add_pending, [(item_id, p, now) for item_id, p in todo])
        for item_id, p in todo:
            self.pending[item_id] = p
        self.queued.set()

    def queue_with(self, item_id: str, priority: int) -> JoinedWrite:
        """The item's extraction, to be queued in another write's transaction."""
        added = time.time()

        def write(db: sqlite3.Connection) -> None:
            db.execute(_PENDING_UPSERT, (item_id, priority, added))

        def committed() -> None:
            if self._wanted(item_id, priority):
                self.pending[item_id] = priority
                self.queued.set()

        return JoinedWrite(write, committed)

    async def save(self, done: list[tuple[str, bytes]], failed: list[tuple[str, str]]) -> None:
        """Stores extraction results (stored vectors) and takes them off the queue, in one
        transaction."""
        assert self.stored is not None
        await self.database.run(_save_features, key_text(self.stored), done, failed)
        if done:
            stored = np.stack([np.frombuffer(v, dtype="<f4") for _, v in done])
            ids = [i for i, _ in done]
            for row, task in self._by_row().items():
                record = self.record(task)
                assert record is not None
                self._banks.setdefault(row, FeatureBank()).add(ids, task_matrix(record, stored))
        self.failed.update(failed)
        for item_id in [i for i, _ in done] + [i for i, _ in failed]:
            self.pending.pop(item_id, None)


class TaskFeatures:
    """One task's features: the shared store's queue and failures, and the vectors and
    record of the task's detector class."""

    def __init__(self, store: FeatureStore, task: Task) -> None:
        self.store, self.task = store, task

    @property
    def bank(self) -> FeatureBank:
        return self.store.bank_of(self.task)

    @property
    def extractor(self) -> ExtractorRecord | None:
        return self.store.record(self.task)

    @property
    def embedding_dimension(self) -> int:
        return self.store.embedding_dimension

    @property
    def pending(self) -> dict[str, int]:
        return self.store.pending

    @property
    def failed(self) -> dict[str, str]:
        return self.store.failed

    def needs_features(self, item_id: str) -> bool:
        return self.store.needs_features(item_id)

    async def enqueue(self, item_ids: list[str], priority: int) -> None:
        await self.store.enqueue(item_ids, priority)

    def queue_with(self, item_id: str, priority: int) -> JoinedWrite:
        return self.store.queue_with(item_id, priority)

    async def save(self, done: list[tuple[str, bytes]], failed: list[tuple[str, str]]) -> None:
        await self.store.save(done, failed)


# -- on the database thread ------------------------------------------------------------


def _load_features(db: sqlite3.Connection, extractor: str) -> tuple[list[str], np.ndarray | None]:
    rows = db.execute("SELECT item_id, vector FROM features WHERE extractor = ?",
                      (extractor,)).fetchall()
    if not rows:
        return [], None
    matrix = np.stack([np.frombuffer(v, dtype="<f4") for _, v in rows])
    return [r[0] for r in rows], matrix


def _save_features(db: sqlite3.Connection, extractor: str, rows: list[tuple[str, bytes]],
                   failed: list[tuple[str, str]]) -> None:
    with db:
        db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?)",
                       [(item_id, extractor, vector) for item_id, vector in rows])
        db.executemany("INSERT OR REPLACE INTO failed VALUES (?, ?)", failed)
        done = [(item_id,) for item_id, _ in rows] + [(item_id,) for item_id, _ in failed]
        db.executemany("DELETE FROM pending WHERE item_id = ?", done)


def _add_pending(db: sqlite3.Connection, entries: list[tuple[str, int, float]]) -> None:
    with db:
        db.executemany(_PENDING_UPSERT, entries)


def _load_pending(db: sqlite3.Connection) -> list[tuple[str, int]]:
    return db.execute("SELECT item_id, priority FROM pending ORDER BY priority, added").fetchall()


def _load_failed(db: sqlite3.Connection) -> dict[str, str]:
    return dict(db.execute("SELECT item_id, reason FROM failed").fetchall())


def _drop_features(db: sqlite3.Connection, keep_extractor: str) -> int:
    with db:
        return db.execute("DELETE FROM features WHERE extractor != ?",
                          (keep_extractor,)).rowcount


def _get_meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    with db:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
