"""The trainer's business logic, behind the thin gRPC servicer: loading, annotations,
training in the background, ranking and leasing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image

from hitl.v1 import common_pb2, trainer_pb2
from trainer_service import metrics
from trainer_service.config import Config
from trainer_service.datasets import Catalog, Item, Progress
from trainer_service.datasets.base import EVALUATION, NEGATIVE, POOL, POSITIVE, VALIDATION
from trainer_service.datasets.local import Batches, DatasetError, load_folder, load_manifest
from trainer_service.datasets.openimages import OpenImages
from trainer_service.features import KNOWN, LABELLED, Extraction, FeatureBank
from trainer_service.model import LinearModel, Metrics, ModelInfo, ModelRegistry, measure, train
from trainer_service.sampler import COLD_START, FALLBACK, GOLD, RANDOM, Sampler, rank
from trainer_service.store import Annotation, Store

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 256
RERANK_DELAY_S = 1.0
LABELLED_WAIT_S = 30.0
MAX_ID_CHARS = 256


class TrainerError(Exception):
    """A request the trainer refuses; `code` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def dataset_loader(kind: int, location: str, config: Config, cache_dir: Path) -> Batches:
    if kind == trainer_pb2.DATASET_KIND_OPEN_IMAGES:
        return OpenImages(location or config.openimages_source, config.label_id,
                          config.image_mirror, cache_dir).load()
    path = Path(location)
    if kind == trainer_pb2.DATASET_KIND_MANIFEST:
        return load_manifest(path, config.validation_fraction, config.evaluation_fraction,
                             config.seed)
    return load_folder(path)


def configured_dataset(config: Config) -> tuple[int, str]:
    if config.dataset.lower() == "openimages":
        return trainer_pb2.DATASET_KIND_OPEN_IMAGES, config.openimages_source
    if Path(config.dataset).is_dir():
        return trainer_pb2.DATASET_KIND_FOLDER, config.dataset
    return trainer_pb2.DATASET_KIND_MANIFEST, config.dataset


class Trainer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.catalog = Catalog()
        self.bank = FeatureBank()
        self.sampler = Sampler(config.mix, config.lease_s)
        self.registry = ModelRegistry(self.data_dir / "models")
        self.model: LinearModel | None = None
        self.model_info: ModelInfo | None = None
        self.curve: list[ModelInfo] = []
        self.store: Store
        self.extraction: Extraction
        self._rng = np.random.default_rng(config.seed)
        self._first_part = asyncio.Event()
        self._labels_changed = asyncio.Event()
        self._train_lock = asyncio.Lock()
        self._trained_on: tuple[int, int] | None = None
        self._status_changed = asyncio.Condition()
        self._status_serial = 0
        self._wake_pending = False
        self._status_cache: tuple[int, trainer_pb2.Status] | None = None
        self._rerank_task: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Opens the store, starts loading and waits for the dataset's first part."""
        self.store = await asyncio.to_thread(Store, self.data_dir / "labels.sqlite3")
        self.extraction = Extraction(
            self.store, self.catalog, self.bank, address=self.config.feature_addr,
            batch=self.config.embed_batch, deadline_s=self.config.embed_deadline_s,
            prefetch=self.config.prefetch, seed=self.config.seed,
            on_features=self._on_features, on_extractor=self._on_extractor)
        await self.extraction.start()
        self.curve = await asyncio.to_thread(self.registry.history)
        if self.extraction.extractor is not None:
            self._on_extractor(self.extraction.extractor)
        kind, location = configured_dataset(self.config)
        self._tasks.append(asyncio.create_task(self._drain(self.load(kind, location))))
        self._tasks.append(asyncio.create_task(self._training_loop(), name="training"))
        await self._first_part.wait()
        await self._enqueue_labelled()
        await self.rerank()

    async def close(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        await self.extraction.close()
        await self.store.close()

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _drain(progress: AsyncIterator[trainer_pb2.LoadingProgress]) -> None:
        async for _ in progress:
            pass

    # -- loading -------------------------------------------------------------------------

    async def load(self, kind: int, location: str) -> AsyncIterator[trainer_pb2.LoadingProgress]:
        """Loads a dataset part by part; every part is usable as soon as it is added."""
        self.catalog.state = trainer_pb2.LOADING_STATE_LOADING
        cache_dir = self.data_dir / "datasets"
        cache_dir.mkdir(parents=True, exist_ok=True)
        sentinel = object()
        try:
            batches = dataset_loader(kind, location, self.config, cache_dir)
            while (step := await asyncio.to_thread(next, batches, sentinel)) is not sentinel:
                items: list[Item] = step[0]  # type: ignore[index]
                await self._add_items(items, step[1])  # type: ignore[index]
                yield self.catalog.loading_proto()
            self.catalog.state = trainer_pb2.LOADING_STATE_READY
            self.catalog.progress = Progress(f"loaded {len(self.catalog)} items", 1.0)
            log.info("dataset loaded", extra={"items": len(self.catalog),
                                              "pool": len(self.catalog.pool),
                                              "validation": len(self.catalog.validation),
                                              "evaluation": len(self.catalog.evaluation)})
        except Exception as exc:  # any failure ends loading; what was loaded stays usable
            name = Path(location).name or location
            detail = str(exc) if isinstance(exc, DatasetError) else f"{type(exc).__name__}: {exc}"
            self.catalog.state = trainer_pb2.LOADING_STATE_FAILED
            self.catalog.progress = Progress(f"loading {name} failed: {detail}")
            log.error("dataset loading failed", extra={"dataset": location, "error": detail})
        finally:
            self._first_part.set()
            self._notify()
        yield self.catalog.loading_proto()

    async def _add_items(self, items: list[Item], progress: Progress) -> None:
        self.catalog.progress = progress
        if items:
            self.catalog.add(items)
            known = [i.id for i in items if i.split in (VALIDATION, EVALUATION)]
            if known:
                await self.extraction.enqueue(known, KNOWN)
            self._first_part.set()
        self._notify()

    async def _enqueue_labelled(self) -> None:
        """Labelled items still without features (e.g. after a crash) are extracted first."""
        missing = [i for i in self.store.active if i not in self.bank]
        if missing:
            await self.extraction.enqueue(missing, LABELLED)

    # -- annotations ---------------------------------------------------------------------

    async def add_annotation(self, request: trainer_pb2.AddAnnotationRequest
                             ) -> tuple[Annotation, bool, Item]:
        if not request.annotation_id:
            raise TrainerError("INVALID_ARGUMENT", "annotation_id is required")
        if request.label not in (POSITIVE, NEGATIVE):
            raise TrainerError("INVALID_ARGUMENT",
                               "label must be LABEL_POSITIVE or LABEL_NEGATIVE")
        if request.duration_ms < 0:
            raise TrainerError("INVALID_ARGUMENT", "duration_ms must be >= 0")
        for name in ("annotation_id", "annotator"):
            if len(getattr(request, name)) > MAX_ID_CHARS:
                raise TrainerError("INVALID_ARGUMENT",
                                   f"{name} is longer than {MAX_ID_CHARS} characters")
        item = self.catalog.get(request.item_id)
        if item is None and self.catalog.state == trainer_pb2.LOADING_STATE_LOADING:
            # After a restart the item may be in the part of the dataset not read yet: a
            # retry will find it, whereas NOT_FOUND would make the client drop the label.
            raise TrainerError("UNAVAILABLE", f"no item {request.item_id!r} yet: the dataset "
                               "is still loading; retry shortly")
        if item is None:
            raise TrainerError("NOT_FOUND", f"no item {request.item_id!r}")
        lease = self.sampler.leases.get(item.id)
        strategy: int = trainer_pb2.STRATEGY_UNSPECIFIED
        version = ""
        if lease is not None and lease.annotator == request.annotator:
            strategy, version = lease.strategy, lease.model_version
        record = Annotation(request.annotation_id, item.id, request.label, request.annotator,
                            strategy, version, request.duration_ms, item.split, time.time())
        needs_features = item.id not in self.bank and item.id not in self.extraction.failed
        started = time.perf_counter()
        stored, duplicate = await self.store.add(
            record, LABELLED if needs_features else None)
        metrics.ACK_SECONDS.observe(time.perf_counter() - started)
        metrics.ANNOTATIONS.labels(trainer_pb2.Split.Name(stored.split),
                                   "duplicate" if duplicate else "recorded").inc()
        if not duplicate:
            self.sampler.release(stored.item_id)
            if needs_features:
                self.extraction.note_pending(stored.item_id, LABELLED)
            elif stored.split == POOL:
                self._labels_changed.set()
            self._notify()
        return stored, duplicate, self.catalog.items.get(stored.item_id, item)

    async def undo_annotation(self, annotation_id: str, annotator: str) -> Annotation:
        from trainer_service.store import NotYours, UnknownAnnotation
        try:
            record = await self.store.undo(annotation_id, annotator)
        except UnknownAnnotation:
            raise TrainerError("NOT_FOUND", f"no annotation {annotation_id!r}") from None
        except NotYours:
            raise TrainerError("PERMISSION_DENIED",
                               f"annotation {annotation_id!r} belongs to another annotator"
                               ) from None
        if record.split == POOL:
            self._labels_changed.set()
        self._notify()
        return record

    def training_set(self) -> tuple[list[str], np.ndarray]:
        """Pool annotations in force whose features are known: gold and evaluation
        annotations never train."""
        ids, labels = [], []
        for item_id in self.store.active:
            record = self.store.current(item_id)
            if record is not None and record.split == POOL and item_id in self.bank:
                ids.append(item_id)
                labels.append(1 if record.label == POSITIVE else 0)
        return ids, np.asarray(labels, dtype=int)

    def known_set(self, split_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(row indices into the feature bank, labels) of embedded validation or
        evaluation items."""
        ids = [i for i in split_ids if i in self.bank]
        y = np.asarray([1 if self.catalog.items[i].known_label == POSITIVE else 0 for i in ids],
                       dtype=int)
        return self.bank.row_indices(ids), y

    # -- training ------------------------------------------------------------------------

    def _on_features(self, ids: list[str]) -> None:
        if any((r := self.store.current(i)) is not None and r.split == POOL for i in ids):
            self._labels_changed.set()
        self._schedule_rerank()
        self._notify()

    def _on_extractor(self, extractor: dict) -> None:
        if self.model_info is not None and self.model_info.extractor == extractor:
            return
        self.model, self.model_info = None, None
        self._trained_on = None
        found = self.registry.newest_compatible(extractor)
        if found is not None:
            self.model, self.model_info = found
            # Nothing to train again unless the labels changed while it was stopped.
            self._trained_on = (self.model_info.label_version, self.model_info.labels)
            log.info("model loaded", extra={"model_version": self.model_info.version})
        self._labels_changed.set()
        self._schedule_rerank()

    async def _training_loop(self) -> None:
        while True:
            await self._labels_changed.wait()
            await settle(self._labels_changed, self.config.debounce_s,
                         self.config.train_max_delay_s)
            try:
                await self.retrain(force=False)
            except Exception:
                log.exception("training failed")

    async def retrain(self, force: bool = True) -> tuple[ModelInfo | None, bool]:
        """Trains on the labels in force; returns (the model in use, whether it is new)."""
        if force:
            await self._await_labelled_features(LABELLED_WAIT_S)
        async with self._train_lock:
            extractor = self.extraction.extractor
            ids, y = self.training_set()
            positives, negatives = int(y.sum()), int(len(y) - y.sum())
            need = self.config.min_per_class
            if extractor is None or positives < need or negatives < need:
                log.info("not enough labels for a model", extra={
                    "positives": positives, "negatives": negatives, "needed": need})
                return self.model_info, False
            trained_on = (self.store.version, len(ids))
            if not force and trained_on == self._trained_on:
                return self.model_info, False
            rows = self.bank.row_indices(ids)
            val_rows, y_val = self.known_set(self.catalog.validation)
            eval_rows, y_eval = self.known_set(self.catalog.evaluation)
            matrix = self.bank.matrix
            started = time.perf_counter()
            model, validation, evaluation = await asyncio.to_thread(
                fit_and_measure, matrix, rows, y, val_rows, y_val, eval_rows, y_eval,
                self.config.max_epochs, self.config.seed)
            seconds = time.perf_counter() - started
            metrics.TRAIN_SECONDS.observe(seconds)
            current = self.model_info
            # A different label set: labels added or withdrawn, or labels whose features
            # arrived since (same log version, more training rows).
            other_labels = current is not None and (
                current.label_version != self.store.version or current.labels != len(ids))
            adopted = (current is None or other_labels
                       or validation.f1 > current.validation.f1)
            info = ModelInfo(self.registry.next_version(), dict(extractor), len(ids),
                             self.store.version, validation, evaluation,
                             train_seconds=round(seconds, 3), adopted=adopted)
            await asyncio.to_thread(self.registry.save, model, info)
            self.curve.append(info)
            metrics.MODELS.labels(str(adopted).lower()).inc()
            self._trained_on = trained_on
            log.info("model trained", extra={"model_version": info.version, "labels": len(ids),
                                             "adopted": adopted, "seconds": info.train_seconds,
                                             "validation": asdict(validation)})
            if adopted:
                self.model, self.model_info = model, info
                await self.rerank()
            self._notify()
            return self.model_info, adopted

    async def _await_labelled_features(self, timeout_s: float) -> None:
        """An explicit retrain first lets the labels' pending extractions finish."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(
                p == LABELLED for p in self.extraction.pending.values()):
            await asyncio.sleep(0.1)

    # -- ranking and leasing ---------------------------------------------------------------

    def _schedule_rerank(self) -> None:
        if self._rerank_task is None or self._rerank_task.done():
            self._rerank_task = asyncio.create_task(self._delayed_rerank())

    async def _delayed_rerank(self) -> None:
        await asyncio.sleep(RERANK_DELAY_S)
        await self.rerank()

    def _available(self, item_id: str) -> bool:
        return self.store.current(item_id) is None and item_id not in self.extraction.failed

    async def rerank(self) -> None:
        """Scores the whole embedded pool with the model in use and replaces the queues."""
        n = len(self.bank)
        ids = self.bank.ids[:n]
        items = self.catalog.items
        candidates = np.asarray([k for k, i in enumerate(ids)
                                 if i in items and items[i].split == POOL and self._available(i)],
                                dtype=np.int64)
        train_ids, _ = self.training_set()
        matrix = self.bank.matrix
        labelled_x = matrix[self.bank.row_indices(train_ids)]
        model = self.model
        version = self.model_info.version if self.model_info else ""
        gold = list(self.catalog.validation)
        started = time.perf_counter()
        queues = await asyncio.to_thread(
            rank, ids, matrix, model, labelled_x, self.extraction.embedding_dimension, gold,
            self._rng, candidates)
        # Before features exist, items not yet embedded keep annotators busy.
        fallback: Any = self._rng.choice(len(self.catalog.pool), min(len(self.catalog.pool), 2000),
                                    replace=False) if self.catalog.pool else []
        queues[FALLBACK] = [(self.catalog.pool[int(i)], 0.0) for i in fallback]
        self.sampler.install(queues, version)
        metrics.RANK_SECONDS.observe(time.perf_counter() - started)

    def next_items(self, request: trainer_pb2.GetNextItemsRequest) -> list[trainer_pb2.Item]:
        if not request.annotator:
            raise TrainerError("INVALID_ARGUMENT", "annotator is required")
        if request.count < 0:
            raise TrainerError("INVALID_ARGUMENT", "count must be >= 0")
        count = min(request.count or 1, self.config.max_items_per_call)
        self.sampler.expire()
        leases = self.sampler.lease(request.annotator, count, request.held_item_ids,
                                    self._available)
        out = []
        for lease in leases:
            item = self.catalog.items[lease.item_id]
            message = trainer_pb2.Item(
                id=item.id, image_url=item.location if item.is_remote else "",
                thumbnail_url=item.thumbnail_url if item.is_remote else "",
                strategy=cast(Any, lease.strategy), score=lease.score,
                model_version=lease.model_version)
            if lease.strategy == GOLD:
                message.known_label = cast(Any, item.known_label)
            message.lease_expire_time.FromNanoseconds(int(lease.expires * 1e9))
            out.append(message)
        return out

    # -- images, status, export -----------------------------------------------------------

    async def image(self, item_id: str, thumbnail: bool) -> tuple[bytes, str]:
        item = self.catalog.get(item_id)
        if item is None:
            raise TrainerError("NOT_FOUND", f"no item {item_id!r}")
        if item.is_remote:
            raise TrainerError("FAILED_PRECONDITION",
                               f"item {item_id!r} is at a public URL: {item.location}")
        try:
            return await asyncio.to_thread(read_image, Path(item.location), thumbnail)
        except FileNotFoundError:
            raise TrainerError("NOT_FOUND", f"the image of {item_id!r} is missing") from None
        except (OSError, Image.DecompressionBombError) as exc:
            # A decompression bomb is not an OSError, but it is just as unreadable.
            raise TrainerError("FAILED_PRECONDITION",
                               f"the image of {item_id!r} cannot be read: {exc}") from None

    def shared_status(self) -> trainer_pb2.Status:
        """The status for watchers: built once per change, however many are watching."""
        if self._status_cache is None or self._status_cache[0] != self._status_serial:
            self._status_cache = (self._status_serial, self.status())
        return self._status_cache[1]

    def status(self) -> trainer_pb2.Status:
        counts = trainer_pb2.Counts(
            items=len(self.catalog), pool=len(self.catalog.pool),
            validation=len(self.catalog.validation), evaluation=len(self.catalog.evaluation))
        items = self.catalog.items
        counts.embedded = sum(1 for i in self.bank.ids if i in items and items[i].split == POOL)
        for item_id in self.store.active:
            record = self.store.current(item_id)
            if record is None:
                continue
            if record.split == POOL:
                if record.label == POSITIVE:
                    counts.labelled_positive += 1
                else:
                    counts.labelled_negative += 1
            elif record.split == VALIDATION:
                counts.gold_checks += 1
                counts.gold_agreements += int(record.label == items[item_id].known_label)
        status = trainer_pb2.Status(
            label_id=self.config.label_id, display_name=self.config.display_name,
            loading=self.catalog.loading_proto(), counts=counts, target_f1=self.config.target_f1)
        if self.model_info is not None:
            status.model.CopyFrom(model_summary(self.model_info))
        for info in self.curve:
            status.learning_curve.add(labels=info.labels, model_version=info.version,
                                      validation=metrics_proto(info.validation),
                                      evaluation=metrics_proto(info.evaluation))
        eta = self.extraction.eta_seconds()
        metrics.PENDING.set(len(self.extraction.pending))
        metrics.EMBEDDED.set(len(self.bank))
        status.extraction.CopyFrom(trainer_pb2.Extraction(
            pending=len(self.extraction.pending),
            seconds_per_item=self.extraction.seconds_per_item, eta_seconds=eta))
        return status

    def _notify(self) -> None:
        self._status_serial += 1
        if not self._wake_pending:  # one wake-up serves any number of changes
            self._wake_pending = True
            self._spawn(self._wake_watchers())

    async def _wake_watchers(self) -> None:
        self._wake_pending = False
        async with self._status_changed:
            self._status_changed.notify_all()

    async def watch(self, min_interval_s: float = 0.25) -> AsyncIterator[trainer_pb2.Status]:
        seen = -1
        while True:
            if seen != self._status_serial:
                seen = self._status_serial
                yield self.shared_status()
                await asyncio.sleep(min_interval_s)
                continue
            async with self._status_changed:
                if seen == self._status_serial:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._status_changed.wait(), 5.0)

    def export(self, include_undone: bool) -> list[Annotation]:
        return [a for a in self.store.annotations.values() if include_undone or not a.undone]


async def settle(changed: asyncio.Event, quiet_s: float, max_s: float) -> None:
    """Debounce: returns once `changed` has not been set for `quiet_s`, or after `max_s`
    at the latest, so that a steady stream of annotations cannot postpone training forever."""
    loop = asyncio.get_running_loop()
    latest = loop.time() + max_s
    while True:
        changed.clear()
        wait = min(quiet_s, latest - loop.time())
        if wait <= 0:
            return
        try:
            await asyncio.wait_for(changed.wait(), wait)
        except TimeoutError:
            return


def fit_and_measure(matrix: np.ndarray, rows: np.ndarray, y: np.ndarray, val_rows: np.ndarray,
                    y_val: np.ndarray, eval_rows: np.ndarray, y_eval: np.ndarray,
                    max_epochs: int, seed: int) -> tuple[LinearModel, Metrics, Metrics]:
    """Training and its metrics, on a worker thread: the rows are gathered there too, so
    the event loop never copies a large feature matrix."""
    x_val, x_eval = matrix[val_rows], matrix[eval_rows]
    model = train(matrix[rows], y, x_val, y_val, max_epochs=max_epochs, seed=seed)
    validation = measure(y_val, model.probability(x_val), model.threshold)
    evaluation = measure(y_eval, model.probability(x_eval), model.threshold)
    return model, validation, evaluation


def read_image(path: Path, thumbnail: bool) -> tuple[bytes, str]:
    data = path.read_bytes()
    if not thumbnail:
        image_format = Image.open(io.BytesIO(data)).format or "JPEG"
        return data, Image.MIME.get(image_format, "application/octet-stream")
    with Image.open(io.BytesIO(data)) as original:
        original.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        image = original.convert("RGB")
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
    return out.getvalue(), "image/jpeg"


def metrics_proto(m) -> common_pb2.Metrics:  # type: ignore[no-untyped-def]
    return common_pb2.Metrics(**asdict(m))


def model_summary(info: ModelInfo) -> trainer_pb2.ModelSummary:
    summary = trainer_pb2.ModelSummary(version=info.version, labels=info.labels,
                                       validation=metrics_proto(info.validation),
                                       evaluation=metrics_proto(info.evaluation))
    summary.create_time.FromNanoseconds(int(info.create_time * 1e9))
    return summary


__all__ = ["COLD_START", "RANDOM", "Trainer", "TrainerError"]
