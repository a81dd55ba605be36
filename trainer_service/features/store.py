"""Features of items, the queue of extractions still to do, and the items that cannot be
embedded: each kept in SQLite, so a restart resumes where it stopped, and in memory.

This object is the one owner of all three: every change goes to the database and to the
in-memory view together. The extraction worker (`extraction.py`) reads the queue and
hands results back here; an annotation that needs features queues its item's extraction
in its own transaction (`queue_with`), so a labelled item's extraction is never lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time

import numpy as np

from trainer_service.features.bank import FeatureBank
from trainer_service.store.database import Database, JoinedWrite

log = logging.getLogger(__name__)

LABELLED, KNOWN, CANDIDATE = 0, 1, 2  # extraction priorities, most urgent first
_NOT_QUEUED = 99

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


def key_text(extractor: dict) -> str:
    return f"{extractor['name']}:{extractor['version']}:{extractor['dimension']}"


class FeatureStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        database.call(lambda db: db.executescript(_SCHEMA))
        self.bank = FeatureBank()  # features of `extractor` only
        self.pending: dict[str, int] = {}  # item id -> priority
        self.failed: dict[str, str] = {}  # item id -> reason
        self.extractor: dict | None = None  # as last described (or remembered)
        # Set whenever an extraction is queued, to wake the worker.
        self.queued = asyncio.Event()

    @property
    def embedding_dimension(self) -> int:
        return int(self.extractor["embedding_dimension"]) if self.extractor else 0

    async def restore(self) -> None:
        """Restores the queue, the failures and the features of the last extractor used."""
        self.pending = dict(await self.database.run(_load_pending))
        self.failed = await self.database.run(_load_failed)
        remembered = await self.database.run(_get_meta, "extractor")
        if remembered:
            self.extractor = json.loads(remembered)
            await self._load_features()

    async def _load_features(self) -> None:
        assert self.extractor is not None
        ids, matrix = await self.database.run(_load_features, key_text(self.extractor))
        self.bank.clear()
        if matrix is not None:
            self.bank.add(ids, matrix)
        log.info("features loaded", extra={"items": len(ids), "pending": len(self.pending)})

    async def use_extractor(self, extractor: dict) -> int:
        """Switches to another extractor's features: those of any other are dropped (they
        will be extracted again); returns how many were."""
        dropped = await self.database.run(_drop_features, key_text(extractor))
        await self.database.run(_set_meta, "extractor", json.dumps(extractor))
        self.extractor = extractor
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
        """Stores extraction results and takes them off the queue, in one transaction."""
        assert self.extractor is not None
        await self.database.run(_save_features, key_text(self.extractor), done, failed)
        if done:
            self.bank.add([i for i, _ in done],
                          np.stack([np.frombuffer(v, dtype="<f4") for _, v in done]))
        self.failed.update(failed)
        for item_id in [i for i, _ in done] + [i for i, _ in failed]:
            self.pending.pop(item_id, None)


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
