"""The trainer's SQLite file (WAL, synchronous=FULL) and the one thread it is used on.

The labelled-set log (`labels.py`) and the feature tables (`feature_store.py`) share this
file and this thread: an annotation and the extraction it needs are then written in one
transaction, so a crash never keeps one without the other.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class Database:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._db: sqlite3.Connection = self._executor.submit(self._open).result()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs `fn(db, *args)` on the database's thread and waits (start-up, off the
        event loop)."""
        return self._executor.submit(fn, self._db, *args).result()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs `fn(db, *args)` on the database's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._db, *args)

    async def close(self) -> None:
        await self.run(lambda db: db.close())
        self._executor.shutdown(wait=True)


@dataclass(frozen=True)
class JoinedWrite:
    """A write of one table made inside another's transaction, and what to do once it is
    on disk. The feature store queues a labelled item's extraction this way, in the
    transaction that records the annotation."""

    write: Callable[[sqlite3.Connection], None]  # on the database thread, in the transaction
    committed: Callable[[], None]  # on the event loop, after the commit


def give_to_task(db: sqlite3.Connection, table: str, create: str, columns: str,
                 owner: str) -> None:
    """Rebuilds `table` from before tasks (no `task` column) as `create` makes it, its
    rows given to the task `owner`, in one transaction; a table with the column, or none,
    is left as it is. `columns`: every column but `task`, copied as they are."""
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    if not present or "task" in present:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(f"ALTER TABLE {table} RENAME TO {table}_before_tasks")
        db.execute(create)
        db.execute(f"INSERT INTO {table} (task, {columns}) SELECT ?, {columns} "
                   f"FROM {table}_before_tasks", (owner,))
        db.execute(f"DROP TABLE {table}_before_tasks")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
