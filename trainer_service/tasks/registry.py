"""Every task the trainer has known, kept in its database: those declared by the settings
or the tasks file, defined again at each start as declared, and those an admin added at
run time, kept as added. Nothing is deleted: a task that is no longer declared, or that an
admin archived, stays with `archived` set, so its labels and models keep their owner."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import replace

from trainer_service.store.database import Database
from trainer_service.tasks.spec import API, FIELDS, TaskError, TaskSpec, check

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, created REAL NOT NULL);
"""


class TaskExists(TaskError):
    pass


class UnknownTask(TaskError):
    pass


class TaskDeclared(TaskError):
    """A change the settings or the tasks file must make, not a call."""


class TaskRegistry:
    def __init__(self, database: Database) -> None:
        self.database = database
        database.call(lambda db: db.executescript(_SCHEMA))
        self.specs: dict[str, TaskSpec] = {}  # in order of creation
        for name, spec in database.call(_load):
            # Fields a later version dropped are left out rather than refused.
            values = {k: v for k, v in json.loads(spec).items() if k in FIELDS}
            self.specs[name] = TaskSpec(**values)

    async def declare(self, declared: Sequence[TaskSpec]) -> None:
        """Defines the declared tasks as given; a task declared before and not now is
        archived. Tasks added at run time are left as they are, unless one is declared
        under the same name: the declaration takes it over."""
        names = {s.name for s in declared}
        changed = [replace(s, archived=True) for s in self.specs.values()
                   if s.source != API and s.name not in names and not s.archived]
        changed += [check(s) for s in declared if self.specs.get(s.name) != s]
        await self._write(changed)

    async def add(self, spec: TaskSpec) -> TaskSpec:
        """A task added at run time; TaskExists when the name is taken (an archived task
        keeps its name: restore it instead)."""
        spec = check(replace(spec, source=API, archived=False))
        if spec.name in self.specs:
            raise TaskExists(f"task {spec.name!r} exists already"
                             + (" (archived: restore it)" if self.specs[spec.name].archived
                                else ""))
        await self._write([spec])
        return spec

    async def set_archived(self, name: str, archived: bool) -> TaskSpec:
        spec = self.specs.get(name)
        if spec is None:
            raise UnknownTask(f"no task {name!r}")
        if spec.source != API:
            raise TaskDeclared(f"task {name!r} is declared by the {spec.source} and follows it: "
                            "archive it there (archived = true in the tasks file)")
        if spec.archived != archived:
            spec = replace(spec, archived=archived)
            await self._write([spec])
        return spec

    async def forget(self, name: str) -> None:
        """Removes a task added at run time that never started (it has no labels)."""
        await self.database.run(_delete, name)
        self.specs.pop(name, None)

    async def _write(self, specs: list[TaskSpec]) -> None:
        if not specs:
            return
        now = time.time()
        await self.database.run(_save, [(s.name, json.dumps(s.as_dict()), now) for s in specs])
        for spec in specs:
            self.specs[spec.name] = spec


# -- on the database thread ------------------------------------------------------------


def _load(db: sqlite3.Connection) -> list[tuple[str, str]]:
    return db.execute("SELECT name, spec FROM tasks ORDER BY created, rowid").fetchall()


def _save(db: sqlite3.Connection, rows: list[tuple[str, str, float]]) -> None:
    with db:
        # A task keeps the time it was first created: the order tasks are listed in.
        db.executemany("INSERT INTO tasks VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                       "spec = excluded.spec", rows)


def _delete(db: sqlite3.Connection, name: str) -> None:
    with db:
        db.execute("DELETE FROM tasks WHERE name = ?", (name,))
