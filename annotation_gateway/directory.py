"""The trainer's tasks as the gateway knows them: listed through ListTasks (archived ones
too) and kept a few seconds; a name missing from the list asks again at once (a task
just added), and a trainer that cannot be asked leaves the last list in place."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from annotation_gateway import convert
from hitl.v1 import trainer_pb2, trainer_pb2_grpc

REFRESH_S = 5.0


class TaskDirectory:
    def __init__(self, trainer: trainer_pb2_grpc.TrainerServiceAsyncStub,
                 deadline_s: float) -> None:
        self.trainer, self.deadline_s = trainer, deadline_s
        self.tasks: dict[str, dict[str, Any]] = {}  # by name, in the trainer's order
        self.default = ""
        self._listed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self, force: bool = False) -> None:
        """Lists the tasks again unless the list is fresh; the RPC error when the trainer
        cannot be asked and no list was ever had."""
        async with self._lock:
            if not force and time.monotonic() - self._listed_at < REFRESH_S:
                return
            try:
                listed = await self.trainer.ListTasks(
                    trainer_pb2.ListTasksRequest(include_archived=True),
                    timeout=self.deadline_s)
            except Exception:
                if not self.tasks:
                    raise
                return
            self.tasks = {t.name: convert.task(t) for t in listed.tasks}
            self.default = listed.default_task
            self._listed_at = time.monotonic()

    async def find(self, name: str) -> dict[str, Any] | None:
        """The task called `name` ("" the default one), or None when the trainer has none."""
        await self.refresh()
        name = name or self.default
        if name not in self.tasks:
            await self.refresh(force=True)
            name = name or self.default
        return self.tasks.get(name)

    def listing(self, include_archived: bool) -> list[dict[str, Any]]:
        return [t for t in self.tasks.values() if include_archived or not t["archived"]]
