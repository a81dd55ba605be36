"""The labelled set: an append-only SQLite log (WAL, synchronous=FULL), plus the
features and pending extractions the trainer must not lose across restarts.

Every write happens on one thread. Concurrent annotations are committed together (group
commit): each caller is answered only after the transaction holding its annotation is on
disk, and one fsync serves many annotators. Undo appends a tombstone; nothing is deleted
from the log.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('add', 'undo')),
    annotation_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    label INTEGER NOT NULL,
    annotator TEXT NOT NULL,
    strategy INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    split INTEGER NOT NULL,
    time REAL NOT NULL,
    UNIQUE (annotation_id, kind)
);
CREATE TABLE IF NOT EXISTS features (
    item_id TEXT PRIMARY KEY, extractor TEXT NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    item_id TEXT PRIMARY KEY, priority INTEGER NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failed (item_id TEXT PRIMARY KEY, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_PENDING_UPSERT = ("INSERT INTO pending VALUES (?, ?, ?) ON CONFLICT(item_id) DO UPDATE SET "
                   "priority = min(priority, excluded.priority)")


class UnknownAnnotation(KeyError):
    pass


class NotYours(PermissionError):
    pass


@dataclass(frozen=True, slots=True)
class Annotation:
    annotation_id: str
    item_id: str
    label: int
    annotator: str
    strategy: int
    model_version: str
    duration_ms: int
    split: int
    time: float
    undone: bool = False


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._db: sqlite3.Connection = self._executor.submit(self._open).result()
        # In memory, rebuilt from the log at start: every annotation in order, and per
        # item the ids of its annotations in force.
        self.annotations: dict[str, Annotation] = {}
        self.active: dict[str, list[str]] = {}
        # Grows with every add or undo: a model remembers the version it was trained on.
        self.version = 0
        self._queue: list[tuple[str, Annotation, int | None, asyncio.Future]] = []
        self._flushing = False
        self._replay()


    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        return db

    def _replay(self) -> None:
        rows = self._executor.submit(
            lambda: self._db.execute("SELECT * FROM events ORDER BY seq").fetchall()).result()
        for row in rows:
            self._apply(row[1], Annotation(*row[2:]))
            self.version = row[0]

    def _apply(self, kind: str, record: Annotation) -> Annotation:
        if kind == "add":
            self.annotations[record.annotation_id] = record
            self.active.setdefault(record.item_id, []).append(record.annotation_id)
            return record
        original = replace(self.annotations[record.annotation_id], undone=True)
        self.annotations[record.annotation_id] = original
        ids = self.active.get(original.item_id, [])
        if record.annotation_id in ids:
            ids.remove(record.annotation_id)
        if not ids:
            self.active.pop(original.item_id, None)
        return original

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs `fn(db, *args)` on the store's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._db, *args)

    # -- annotations ---------------------------------------------------------------

    def current(self, item_id: str) -> Annotation | None:
        """The annotation in force for an item: the latest one not undone."""
        ids = self.active.get(item_id)
        return self.annotations[ids[-1]] if ids else None

    async def add(self, record: Annotation,
                  extract_priority: int | None = None) -> tuple[Annotation, bool]:
        """Appends `record`; returns (the recorded annotation, whether it was a duplicate).
        Returns only once the annotation is durable. With `extract_priority`, the item's
        feature extraction is queued in the same transaction."""
        return await self._submit("add", record, extract_priority)

    async def undo(self, annotation_id: str, annotator: str) -> Annotation:
        original = self.annotations.get(annotation_id)
        if original is None:
            raise UnknownAnnotation(annotation_id)
        if annotator and original.annotator != annotator:
            raise NotYours(annotation_id)
        record, _ = await self._submit("undo", replace(original, time=time.time()), None)
        return record

    async def _submit(self, kind: str, record: Annotation, extract: int | None) -> Any:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((kind, record, extract, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self.run(self._write, [(k, r, e) for k, r, e, _ in batch])
                except Exception as exc:
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (kind, record, _, future), (seq, stored) in zip(batch, results, strict=True):
                    if seq is not None:  # new: apply in log order
                        self.version = max(self.version, seq)
                        outcome = (self._apply(kind, stored), False)
                    else:
                        outcome = (self.annotations[record.annotation_id], True)
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._flushing = False

    @staticmethod
    def _write(db: sqlite3.Connection,
               batch: list[tuple[str, Annotation, int | None]]
               ) -> list[tuple[int | None, Annotation]]:
        """One transaction for the batch; (seq, record) per entry, seq None for repeats."""
        out: list[tuple[int | None, Annotation]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for kind, r, extract in batch:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO events (kind, annotation_id, item_id, label, "
                    "annotator, strategy, model_version, duration_ms, split, time) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (kind, r.annotation_id, r.item_id, r.label, r.annotator, r.strategy,
                     r.model_version, r.duration_ms, r.split, r.time))
                out.append((cursor.lastrowid if cursor.rowcount else None, r))
                if extract is not None and cursor.rowcount:
                    db.execute(_PENDING_UPSERT, (r.item_id, extract, r.time))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    # -- features, pending extractions, failures ----------------------------------------

    @staticmethod
    def load_features(db: sqlite3.Connection,
                      extractor: str) -> tuple[list[str], np.ndarray | None]:
        rows = db.execute("SELECT item_id, vector FROM features WHERE extractor = ?",
                          (extractor,)).fetchall()
        if not rows:
            return [], None
        matrix = np.stack([np.frombuffer(v, dtype="<f4") for _, v in rows])
        return [r[0] for r in rows], matrix

    @staticmethod
    def save_features(db: sqlite3.Connection, extractor: str,
                      rows: list[tuple[str, bytes]], failed: list[tuple[str, str]]) -> None:
        """Stores results and clears them from the pending list, in one transaction."""
        with db:
            db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?)",
                           [(item_id, extractor, vector) for item_id, vector in rows])
            db.executemany("INSERT OR REPLACE INTO failed VALUES (?, ?)", failed)
            done = [(item_id,) for item_id, _ in rows] + [(item_id,) for item_id, _ in failed]
            db.executemany("DELETE FROM pending WHERE item_id = ?", done)

    @staticmethod
    def add_pending(db: sqlite3.Connection, entries: list[tuple[str, int]]) -> None:
        """Queues extractions; an item already queued keeps the more urgent priority."""
        now = time.time()
        with db:
            db.executemany(_PENDING_UPSERT,
                           [(item_id, priority, now) for item_id, priority in entries])

    @staticmethod
    def load_pending(db: sqlite3.Connection) -> list[tuple[str, int]]:
        return db.execute("SELECT item_id, priority FROM pending ORDER BY priority, added"
                          ).fetchall()

    @staticmethod
    def load_failed(db: sqlite3.Connection) -> dict[str, str]:
        return dict(db.execute("SELECT item_id, reason FROM failed").fetchall())

    @staticmethod
    def drop_features(db: sqlite3.Connection, keep_extractor: str) -> int:
        with db:
            return db.execute("DELETE FROM features WHERE extractor != ?",
                              (keep_extractor,)).rowcount

    @staticmethod
    def get_meta(db: sqlite3.Connection, key: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
        with db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    async def close(self) -> None:
        await self.run(lambda db: db.close())
        self._executor.shutdown(wait=True)
