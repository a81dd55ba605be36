"""The tasks running in one trainer process, by name. The default task (where calls that
name none go) is started before the trainer serves; the others start in the background,
and a call for one still starting is told to retry. A task added at run time is started
before the call that added it returns; archiving one stops it (its labels and models stay
on disk) and restoring starts it again. What a running task is (its labels, models and
status, over the shared dataset) is made by the `start` function given at construction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from trainer_service.store.database import Database
from trainer_service.store.labels import LabelLog
from trainer_service.tasks.registry import TaskRegistry, UnknownTask
from trainer_service.tasks.spec import TaskError, TaskSpec

log = logging.getLogger(__name__)

STARTING, SERVING, ARCHIVED, FAILED = "starting", "serving", "archived", "failed"


class TaskArchived(TaskError):
    pass


class TaskStarting(TaskError):
    """Not serving yet (starting, or failed to start): a retry may succeed."""


class Closable(Protocol):
    async def close(self) -> None: ...


T = TypeVar("T", bound=Closable)


class TaskSet(Generic[T]):
    def __init__(self, start: Callable[[TaskSpec], Awaitable[T]]) -> None:
        self._start = start
        self.registry: TaskRegistry | None = None  # given by `open`
        self.default = ""
        self.running: dict[str, T] = {}
        self._states: dict[str, str] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def open(self, registry: TaskRegistry, declared: Sequence[TaskSpec],
                   default: str) -> None:
        """Defines the declared tasks, starts the default one and, in the background,
        every other task that is not archived."""
        self.registry = registry
        await registry.declare(declared)
        self.default = default
        await self.start(default)
        for spec in self.specs():
            if not spec.archived and spec.name != default:
                self._states[spec.name] = STARTING
                task = asyncio.create_task(self._start_logged(spec.name), name=spec.name)
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    @property
    def _registry(self) -> TaskRegistry:
        if self.registry is None:
            raise TaskStarting("the trainer is starting; retry shortly")
        return self.registry

    async def start(self, name: str) -> T:
        spec = self._registry.specs[name]
        self._states[name] = STARTING
        try:
            running = await self._start(spec)
        except BaseException:
            self._states[name] = FAILED
            raise
        self.running[name] = running
        self._states[name] = SERVING
        log.info("task serving", extra={"task": name})
        return running

    async def _start_logged(self, name: str) -> None:
        try:
            await self.start(name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task could not start", extra={"task": name})

    def specs(self) -> list[TaskSpec]:
        return list(self._registry.specs.values())

    def state(self, name: str) -> str:
        spec = self._registry.specs.get(name)
        if spec is not None and spec.archived:
            return ARCHIVED
        return self._states.get(name, STARTING)

    def get(self, name: str) -> T:
        """The running task of that name ("" names the default one)."""
        name = name or self.default
        running = self.running.get(name)
        if running is not None:
            return running
        spec = self._registry.specs.get(name)
        if spec is None:
            raise UnknownTask(f"no task {name!r}")
        if spec.archived:
            raise TaskArchived(f"task {name!r} is archived: its labels can be exported, and "
                               "nothing is served or recorded for it")
        if self.state(name) == FAILED:
            raise TaskStarting(f"task {name!r} could not start (see the trainer's log)")
        raise TaskStarting(f"task {name!r} is starting; retry shortly")

    async def create(self, spec: TaskSpec) -> TaskSpec:
        """Adds a task and starts it; returns once it serves."""
        spec = await self._registry.add(spec)
        try:
            await self.start(spec.name)
        except Exception:  # it never served, so it holds nothing: it leaves no trace
            await self._registry.forget(spec.name)
            raise
        return spec

    async def set_archived(self, name: str, archived: bool) -> TaskSpec:
        spec = await self._registry.set_archived(name, archived)
        if archived and name in self.running:
            await self.running.pop(name).close()
        elif not archived and name not in self.running:
            await self.start(name)
        return spec

    async def archived_labels(self, name: str, database: Database) -> LabelLog | None:
        """An archived task's label log, read from the database (its labels stay there);
        None for a task that runs (its own log is current)."""
        spec = self._registry.specs.get(name or self.default)
        if spec is None:
            raise UnknownTask(f"no task {name!r}")
        if not spec.archived:
            return None
        return await asyncio.to_thread(LabelLog, database, spec.name)

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for running in list(self.running.values()):
            await running.close()
        self.running.clear()

