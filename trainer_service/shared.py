"""What every task of one trainer shares: the SQLite file, the dataset's catalogue and its
loading, the feature store and the extraction worker that fills it, and the unit
embeddings the near-duplicate screens compare. A feature vector
describes an image, not a question, so an item embedded for one task serves every task:
a new task over an embedded dataset starts ranking at once and embeds nothing again.

Each running task (`core.Trainer`) attaches itself here and is told when features arrive,
when the extractor changes and when the dataset's loading moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from trainer_service.config import Config
from trainer_service.datasets import Catalog
from trainer_service.features.extraction import Extraction
from trainer_service.features.records import ExtractorRecord
from trainer_service.features.store import FeatureStore
from trainer_service.features.task_evidence import Task
from trainer_service.loading import Loading, configured_dataset, drain
from trainer_service.selection.near_duplicates import UnitRows
from trainer_service.store.database import Database
from trainer_service.store.labels import migrate as labels_before_tasks
from trainer_service.store.served import migrate as served_before_tasks
from trainer_service.tasks.evidence import feature_task
from trainer_service.tasks.file import TasksFile
from trainer_service.tasks.registry import TaskRegistry
from trainer_service.tasks.running import Closable, TaskSet
from trainer_service.tasks.spec import task_config

log = logging.getLogger(__name__)
# What runs one task (core.Trainer, which this module does not import).
T = TypeVar("T", bound=Closable)


@dataclass(frozen=True)
class Listener:
    on_features: Callable[[list[str]], None]
    on_extractor: Callable[[ExtractorRecord], None]
    on_change: Callable[[], None]


class Shared:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.catalog = Catalog()
        # The candidates' unit embeddings every task's near-duplicate screen reads, and
        # which pool items the audit reserve holds (the same for every task).
        self.units = UnitRows()
        self.reserve: dict[str, bool] = {}
        self.opened = False
        self._listeners: dict[int, Listener] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Opened by `open`.
        self.database: Database
        self.features: FeatureStore
        self.loading: Loading
        self.extraction: Extraction

    def task_dir(self, name: str) -> Path:
        """A task's own folder (its models)."""
        return self.data_dir / "tasks" / name

    async def open(self, owner: str, guide: Task) -> None:
        """Opens the database, restores the features and starts the extraction worker and
        the dataset's loading. Labels and models from before tasks go to `owner`, whose
        detector class (`guide`) chooses the evidence the features in memory carry."""
        config = self.config
        self.database = await asyncio.to_thread(Database, self.data_dir / "labels.sqlite3")
        for migrate in (labels_before_tasks, served_before_tasks):
            await self.database.run(migrate, owner)
        await asyncio.to_thread(self._adopt_models, owner)
        self.features = await asyncio.to_thread(FeatureStore, self.database, guide)
        self.loading = Loading(config, self.data_dir / "datasets", self.catalog, self.features,
                               self.notify)
        self.extraction = Extraction(
            self.features, self.catalog, address=config.feature_addr,
            batch=config.embed_batch, deadline_s=config.embed_deadline_s,
            prefetch=config.prefetch, seed=config.seed,
            max_message_bytes=config.max_message_bytes,
            max_attempts=config.embed_max_attempts, retry_s=config.embed_retry_s,
            on_features=self.on_features, on_extractor=self.on_extractor)
        await self.features.restore()
        self.extraction.start()
        kind, location = configured_dataset(config)
        self._tasks.append(asyncio.create_task(drain(self.loading.load(kind, location)),
                                               name="dataset"))
        self.opened = True

    async def open_tasks(self, tasks: TaskSet[T], declared: TasksFile) -> None:
        """Opens what the tasks share, then the declared tasks: the default one before the
        trainer serves, the others in the background."""
        owner = next(t for t in declared.tasks if t.name == declared.default)
        await self.open(declared.default, feature_task(task_config(self.config, owner)))
        registry = await asyncio.to_thread(TaskRegistry, self.database)
        await tasks.open(registry, declared.tasks, declared.default)

    async def close_tasks(self, tasks: TaskSet[T]) -> None:
        await tasks.close()
        await self.close()

    def _adopt_models(self, owner: str) -> None:
        legacy, target = self.data_dir / "models", self.task_dir(owner) / "models"
        if legacy.is_dir() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            legacy.rename(target)
            log.info("models from before tasks given to the default task",
                     extra={"task": owner})

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.opened:
            await self.extraction.close()
            await self.database.close()

    # -- the running tasks ---------------------------------------------------------------

    def attach(self, key: object, listener: Listener) -> None:
        self._listeners[id(key)] = listener

    def detach(self, key: object) -> None:
        self._listeners.pop(id(key), None)

    def notify(self) -> None:
        for listener in list(self._listeners.values()):
            listener.on_change()

    def on_features(self, ids: list[str]) -> None:
        for listener in list(self._listeners.values()):
            listener.on_features(ids)

    def on_extractor(self, extractor: ExtractorRecord) -> None:
        for listener in list(self._listeners.values()):
            listener.on_extractor(extractor)
