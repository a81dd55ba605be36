"""The labelled set: an append-only SQLite log of annotations (WAL, synchronous=FULL).

Every write happens on the database's one thread. Concurrent annotations are committed
together (group commit): each caller is answered only after the transaction holding its
annotation is on disk, and one fsync serves many annotators. Undo appends a tombstone;
nothing is deleted from the log.

Answers (yes or no) and passes (skip, unsure) share the log but not the indexes: an item
someone passed over is still unlabelled for everybody else and never trains.

Every task's annotations share the one table, each row naming its task: a `LabelLog` reads
and writes its task's rows only, and an annotation id is unique within its task, so no
label ever counts for another task.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace
from typing import Any, TypeAlias

from trainer_service.domain import DEFAULT_TASK, PASSES, Annotation, Label, Split, Strategy
from trainer_service.store.answers import resolve
from trainer_service.store.database import Database, JoinedWrite, give_to_task

_TABLE = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
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
    note TEXT NOT NULL DEFAULT '',
    UNIQUE (task, annotation_id, kind)
);
"""
_INDEX = "CREATE INDEX IF NOT EXISTS events_by_task ON events (task, seq)"
# Logs written before notes existed gain the column (empty for their rows).
_ADD_NOTE = "ALTER TABLE events ADD COLUMN note TEXT NOT NULL DEFAULT ''"
# What a write of the log answers: the recorded annotation, and whether it was a repeat.
Outcome: TypeAlias = tuple[Annotation, bool]
_COLUMNS = ("seq, kind, annotation_id, item_id, label, annotator, strategy, model_version, "
            "duration_ms, split, time, note")


class UnknownAnnotation(KeyError):
    pass


class NotYours(PermissionError):
    pass


def _from_row(row: tuple[Any, ...]) -> Annotation:
    """An `events` row from `annotation_id` on, with the stored ints back as enums."""
    (annotation_id, item_id, label, annotator, strategy, version, duration_ms, split, at,
     note) = row
    return Annotation(annotation_id, item_id, Label(label), annotator, Strategy(strategy),
                      version, duration_ms, Split(split), at, note=note)


def migrate(db: sqlite3.Connection, owner: str) -> None:
    """Brings the log to the current schema. A log from before tasks has its rows given to
    `owner` (the default task), once: the table is rebuilt, since its uniqueness now holds
    within a task."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    if columns and "note" not in columns:
        db.execute(_ADD_NOTE)
    give_to_task(db, "events", _TABLE, _COLUMNS, owner)
    db.execute(_TABLE)
    db.execute(_INDEX)


class LabelLog:
    def __init__(self, database: Database, task: str = DEFAULT_TASK) -> None:
        self.database, self.task = database, task
        database.call(migrate, task)
        # In memory, rebuilt from the log at start: every annotation in order, per item
        # the ids of its answers in force, and per item the ids of its passes in force.
        self.annotations: dict[str, Annotation] = {}
        self.active: dict[str, list[str]] = {}
        # Per (annotator, validation item), the first answer that annotator gave it,
        # undone or not: what a known-answer check counts (`checks.py`), so that undoing
        # an answer and giving another ("Fix it") never turns a failed check into a
        # passed one. The log is append-only, so replay rebuilds it after a restart.
        self.first_checks: dict[tuple[str, str], Annotation] = {}
        self.passes: dict[str, list[str]] = {}
        # annotator -> item -> passes in force: what not to serve them again.
        self._passed: dict[str, dict[str, int]] = {}
        # annotator -> ids of every annotation they made, oldest first.
        self.by_annotator: dict[str, list[str]] = {}
        # (annotator, item) -> the id of their latest annotation of it, withdrawn or not:
        # what lets them change their own answer once its lease is over (`served`).
        self._latest: dict[tuple[str, str], str] = {}
        # Grows with every add or undo: a model remembers the version it was trained on.
        self.version = 0
        self._queue: list[tuple[str, Annotation, JoinedWrite | None, asyncio.Future[Outcome]]] = []
        self._flushing = False
        self._replay()

    def _replay(self) -> None:
        rows = self.database.call(lambda db: db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE task = ? ORDER BY seq", (self.task,)
        ).fetchall())
        for row in rows:
            self._apply(row[1], _from_row(row[2:]))
            self.version = row[0]

    def _apply(self, kind: str, record: Annotation) -> Annotation:
        passed = record.label in PASSES
        index = self.passes if passed else self.active
        if kind == "add":
            self.annotations[record.annotation_id] = record
            if record.split == Split.VALIDATION and not passed:
                self.first_checks.setdefault((record.annotator, record.item_id), record)
            index.setdefault(record.item_id, []).append(record.annotation_id)
            self.by_annotator.setdefault(record.annotator, []).append(record.annotation_id)
            self._latest[(record.annotator, record.item_id)] = record.annotation_id
            if passed:
                mine = self._passed.setdefault(record.annotator, {})
                mine[record.item_id] = mine.get(record.item_id, 0) + 1
            return record
        original = replace(self.annotations[record.annotation_id], undone=True)
        self.annotations[record.annotation_id] = original
        ids = index.get(original.item_id, [])
        if record.annotation_id in ids:
            ids.remove(record.annotation_id)
            if passed:
                mine = self._passed[original.annotator]
                mine[original.item_id] -= 1
                if not mine[original.item_id]:
                    del mine[original.item_id]
        if not ids:
            index.pop(original.item_id, None)
        return original

    def answers(self, item_id: str) -> list[Annotation]:
        """The item's answers in force (yes or no, not withdrawn), oldest first."""
        return [self.annotations[i] for i in self.active.get(item_id, ())]

    def pass_counts(self) -> tuple[int, int]:
        """(skips, unsure marks) in force."""
        marks = [self.annotations[i].label for ids in self.passes.values() for i in ids]
        return sum(m == Label.SKIP for m in marks), sum(m == Label.UNSURE for m in marks)

    def current(self, item_id: str) -> Annotation | None:
        """The answer in force for an item (see `answers.resolve`): the latest one when a
        single person answered it; None when unanswered or contested."""
        ids = self.active.get(item_id)
        if not ids:
            return None
        if len(ids) == 1:
            return self.annotations[ids[0]]
        return resolve(self.answers(item_id))

    def latest(self, annotator: str, item_id: str) -> Annotation | None:
        """The annotator's latest annotation of the item, withdrawn or not."""
        annotation_id = self._latest.get((annotator, item_id))
        return None if annotation_id is None else self.annotations[annotation_id]

    def passed_by(self, annotator: str) -> dict[str, int]:
        """Items the annotator skipped or marked unsure (in force)."""
        return self._passed.get(annotator, {})

    async def add(self, record: Annotation,
                  joined: JoinedWrite | None = None) -> tuple[Annotation, bool]:
        """Appends `record`; returns (the recorded annotation, whether it was a duplicate).
        Returns only once the annotation is durable. `joined` is written in the same
        transaction when the annotation is new, and not at all for a duplicate."""
        return await self._submit("add", record, joined)

    async def undo(self, annotation_id: str, annotator: str) -> Annotation:
        original = self.annotations.get(annotation_id)
        if original is None:
            raise UnknownAnnotation(annotation_id)
        if annotator and original.annotator != annotator:
            raise NotYours(annotation_id)
        record, _ = await self._submit("undo", replace(original, time=time.time()), None)
        return record

    async def _submit(self, kind: str, record: Annotation,
                      joined: JoinedWrite | None) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((kind, record, joined, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self.database.run(
                        self._write, self.task, [(k, r, j) for k, r, j, _ in batch])
                except Exception as exc:
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (kind, record, joined, future), (seq, stored) in zip(batch, results,
                                                                          strict=True):
                    if seq is not None:  # new: apply in log order
                        self.version = max(self.version, seq)
                        outcome = (self._apply(kind, stored), False)
                        if joined is not None:
                            joined.committed()
                    else:
                        outcome = (self.annotations[record.annotation_id], True)
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._flushing = False

    @staticmethod
    def _write(db: sqlite3.Connection, task: str,
               batch: list[tuple[str, Annotation, JoinedWrite | None]]
               ) -> list[tuple[int | None, Annotation]]:
        """One transaction for the batch; (seq, record) per entry, seq None for repeats."""
        out: list[tuple[int | None, Annotation]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for kind, r, joined in batch:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO events (task, kind, annotation_id, item_id, label, "
                    "annotator, strategy, model_version, duration_ms, split, time, note) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (task, kind, r.annotation_id, r.item_id, int(r.label), r.annotator,
                     int(r.strategy), r.model_version, r.duration_ms, int(r.split), r.time,
                     r.note))
                out.append((cursor.lastrowid if cursor.rowcount else None, r))
                if joined is not None and cursor.rowcount:
                    joined.write(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out
