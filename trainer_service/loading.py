"""Loading a dataset into the catalog, part by part: every part is usable as soon as it
is added, and its known (validation and evaluation) items are queued for extraction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from hitl.redact import without_addresses
from trainer_service.config import Config
from trainer_service.datasets import Catalog, Item, Progress
from trainer_service.datasets.csvstream import CutOff
from trainer_service.datasets.local import Batches, DatasetError, load_folder, load_manifest
from trainer_service.datasets.openimages import OpenImages
from trainer_service.domain import DatasetKind, LoadingProgress, LoadingState, Split
from trainer_service.features.store import KNOWN, FeatureStore

log = logging.getLogger(__name__)


def dataset_loader(kind: DatasetKind, location: str, config: Config,
                   cache_dir: Path) -> Batches:
    if kind == DatasetKind.OPEN_IMAGES:
        if config.positive_class:
            raise DatasetError(f"Open Images takes a label id (/m/...) as the positive "
                               f"class, not {config.positive_class!r}")
        return OpenImages(location or config.openimages_source, config.label_id,
                          config.image_mirror, cache_dir).load()
    path = Path(location)
    if kind == DatasetKind.MANIFEST:
        return load_manifest(path, config.validation_fraction, config.evaluation_fraction,
                             config.seed, config.dataset_roots, config.positive_class)
    return load_folder(path)


def known_labels(config: Config) -> tuple[str, ...]:
    """What decides the known labels the configured dataset gives a task: tasks that agree
    on it share one catalogue, the others read the dataset again with their own."""
    kind, _ = configured_dataset(config)
    if kind == DatasetKind.OPEN_IMAGES:
        return (config.label_id,)
    return (config.positive_class,) if kind == DatasetKind.MANIFEST else ()


async def drain(progress: AsyncIterator[LoadingProgress]) -> None:
    """Runs a loading to its end (nobody watches its progress)."""
    async for _ in progress:
        pass


def configured_dataset(config: Config) -> tuple[DatasetKind, str]:
    if config.dataset.lower() == "openimages":
        return DatasetKind.OPEN_IMAGES, config.openimages_source
    if Path(config.dataset).is_dir():
        return DatasetKind.FOLDER, config.dataset
    return DatasetKind.MANIFEST, config.dataset


class Loading:
    def __init__(self, config: Config, cache_dir: Path, catalog: Catalog,
                 features: FeatureStore, notify: Callable[[], None],
                 dataset: Catalog | None = None) -> None:
        """`dataset`: the dataset's catalogue, when `catalog` is a task's own reading of
        it; items it lacks are noted there, so that they can be embedded and shown."""
        self.config, self.cache_dir = config, cache_dir
        self.catalog, self.features, self.notify = catalog, features, notify
        self.dataset = dataset
        # Set once the first part is in (or loading has ended): the service can start.
        self.first_part = asyncio.Event()
        self.ended = asyncio.Event()

    async def load(self, kind: DatasetKind, location: str) -> AsyncIterator[LoadingProgress]:
        """Loads a dataset part by part, yielding the progress after each."""
        self.catalog.state = LoadingState.LOADING
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        sentinel = object()
        notes: list[str] = []
        try:
            batches = dataset_loader(kind, location, self.config, self.cache_dir)
            while (step := await asyncio.to_thread(next, batches, sentinel)) is not sentinel:
                items: list[Item] = step[0]  # type: ignore[index]
                progress: Progress = step[1]  # type: ignore[index]
                notes += [progress.note] if progress.note else []
                await self._add_items(items, progress)
                yield self.catalog.loading()
            self.catalog.state = LoadingState.READY
            self.catalog.progress = Progress(
                "; ".join([f"loaded {len(self.catalog)} items", *notes]), 1.0)
            log.info("dataset loaded", extra={"items": len(self.catalog),
                                              "pool": len(self.catalog.pool),
                                              "validation": len(self.catalog.validation),
                                              "evaluation": len(self.catalog.evaluation)})
        except Exception as exc:  # any failure ends loading; what was loaded stays usable
            name = Path(location).name or location
            detail = without_addresses(str(exc) if isinstance(exc, (DatasetError, CutOff))
                                       else f"{type(exc).__name__}: {exc}")
            self.catalog.state = LoadingState.FAILED
            self.catalog.progress = Progress(f"loading {name} failed: {detail}")
            log.error("dataset loading failed", extra={"dataset": location, "error": detail})
        finally:
            self.first_part.set()
            self.ended.set()
            self.notify()
        yield self.catalog.loading()

    async def _add_items(self, items: list[Item], progress: Progress) -> None:
        self.catalog.progress = progress
        if items:
            if self.dataset is not None:
                items = self.dataset.share(items)
            self.catalog.add(items)
            known = [i.id for i in items if i.split in (Split.VALIDATION, Split.EVALUATION)]
            if known:
                await self.features.enqueue(known, KNOWN)
            self.first_part.set()
        self.notify()
