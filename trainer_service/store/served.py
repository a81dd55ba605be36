"""What was served to whom: each item leased to an annotator (or listed for them on the
review page), with why it was served and until when, kept in the trainer's SQLite file so
that it outlives a restart: a label retried after a crash is still taken.

An answer is taken only for an item served to its annotator, up to its lease's end and a
grace after it, or as a change of that annotator's own earlier answer to the item (the
page's undo, and its strip of recent answers, change an answer after its lease). Nothing
else: an item served to somebody else, a check never served, an evaluation item. So the
known answer of a check is told only to whoever was served it as a check.

Each record names its task: an item served in one task is not served in another.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trainer_service.domain import DEFAULT_TASK, Annotation, Strategy
from trainer_service.store.database import Database, give_to_task

_SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
    task TEXT NOT NULL,
    annotator TEXT NOT NULL,
    item_id TEXT NOT NULL,
    strategy INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    served_at REAL NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (task, annotator, item_id)
) WITHOUT ROWID;
"""
_COLUMNS = "annotator, item_id, strategy, model_version, served_at, expires"
# Records past their lease and grace answer nothing; they are dropped this often.
PRUNE_EVERY_S = 600.0


@dataclass(frozen=True, slots=True)
class Served:
    strategy: Strategy
    model_version: str
    served_at: float
    expires: float


def basis(served: Served | None, earlier: Annotation | None) -> tuple[Strategy, str] | None:
    """Why an answer is taken (the strategy and model it is recorded with), or None when it
    must be refused. `served`: the annotator's serving of the item still within its lease
    and grace; `earlier`: their latest annotation of it, withdrawn or not. A serving newer
    than their last answer is a fresh one; otherwise the answer changes their own, and
    keeps why the item was served (a recheck stays a recheck)."""
    if served is not None and (earlier is None or served.served_at > earlier.time):
        return served.strategy, served.model_version
    if earlier is not None:
        return earlier.strategy, earlier.model_version
    return None


def migrate(db: sqlite3.Connection, owner: str) -> None:
    """Records from before tasks go to `owner` (the default task), once."""
    give_to_task(db, "served", _SCHEMA, _COLUMNS, owner)


class ServedLog:
    def __init__(self, database: Database, grace_s: float, task: str = DEFAULT_TASK) -> None:
        self.database, self.grace_s, self.task = database, grace_s, task
        self._records: dict[tuple[str, str], Served] = {}
        database.call(migrate, task)
        rows = database.call(self._load, time.time() - grace_s, task)
        for annotator, item_id, strategy, version, served_at, expires in rows:
            self._records[(annotator, item_id)] = Served(Strategy(strategy), version,
                                                         served_at, expires)
        self._pruned = time.time()

    @staticmethod
    def _load(db: sqlite3.Connection, since: float, task: str) -> list[tuple[Any, ...]]:
        db.executescript(_SCHEMA)
        return db.execute(f"SELECT {_COLUMNS} FROM served WHERE task = ? AND expires >= ?",
                          (task, since)).fetchall()

    def answerable(self, annotator: str, item_id: str, now: float | None = None
                   ) -> Served | None:
        """The item's serving to `annotator`, while its lease and grace last."""
        record = self._records.get((annotator, item_id))
        now = time.time() if now is None else now
        return record if record is not None and now <= record.expires + self.grace_s else None

    def live(self, annotator: str, item_id: str, now: float) -> bool:
        """Whether the item is served to `annotator` now, within its lease."""
        record = self._records.get((annotator, item_id))
        return record is not None and now <= record.expires

    async def record(self, annotator: str, served: Iterable[tuple[str, Served]],
                     renewed: Iterable[str] = (), expires: float = 0.0) -> None:
        """Records new servings and the renewed leases of held items (until `expires`), in
        one transaction; returns once they are on disk."""
        fresh, held = list(served), [i for i in renewed if (annotator, i) in self._records]
        if not fresh and not held:
            return
        now = time.time()
        prune = now - self._pruned > PRUNE_EVERY_S
        await self.database.run(self._write, self.task, annotator, fresh, held, expires,
                                now - self.grace_s if prune else None)
        for item_id, record in fresh:
            self._records[(annotator, item_id)] = record
        for item_id in held:
            old = self._records[(annotator, item_id)]
            self._records[(annotator, item_id)] = Served(old.strategy, old.model_version,
                                                         old.served_at, expires)
        if prune:
            self._pruned = now
            for key in [k for k, v in self._records.items() if v.expires < now - self.grace_s]:
                del self._records[key]

    @staticmethod
    def _write(db: sqlite3.Connection, task: str, annotator: str,
               fresh: list[tuple[str, Served]], held: list[str], expires: float,
               prune_before: float | None) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                f"INSERT OR REPLACE INTO served (task, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(task, annotator, item_id, int(r.strategy), r.model_version, r.served_at,
                  r.expires) for item_id, r in fresh])
            db.executemany("UPDATE served SET expires = ? WHERE task = ? AND annotator = ? "
                           "AND item_id = ?", [(expires, task, annotator, item_id)
                                                for item_id in held])
            if prune_before is not None:
                db.execute("DELETE FROM served WHERE task = ? AND expires < ?",
                           (task, prune_before))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
