"""Continual training: a model is trained in the background whenever the training labels
in force change (after a quiet moment), measured on the validation and evaluation splits
where a dataset has them, saved, and put to use."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from hitl.evidence import EVIDENCE_DIM
from trainer_service import metrics
from trainer_service.config import Config
from trainer_service.datasets import Catalog
from trainer_service.domain import Label, Metrics, Split, Strategy
from trainer_service.features.records import ExtractorRecord
from trainer_service.features.store import LABELLED, TaskFeatures
from trainer_service.models.classifier import LinearModel, measure, population_moments, train
from trainer_service.models.prior import DetectorPrior, train_with_prior
from trainer_service.models.registry import ModelInfo, ModelRegistry
from trainer_service.store.labels import LabelLog

log = logging.getLogger(__name__)

# An explicit retrain waits this long at most for the labels' features.
LABELLED_WAIT_S = 30.0


class Training:
    def __init__(self, config: Config, models_dir: Path, catalog: Catalog, labels: LabelLog,
                 features: TaskFeatures, *, on_adopted: Callable[[], Awaitable[None]],
                 notify: Callable[[], None]) -> None:
        self.config, self.catalog, self.labels, self.features = config, catalog, labels, features
        self.registry = ModelRegistry(models_dir, keep=config.keep_models)
        self.on_adopted, self.notify = on_adopted, notify
        self.model: LinearModel | None = None
        self.model_info: ModelInfo | None = None
        # Before the first model (min_per_class labels of each class), a model of the few
        # labels there are ranks the cold start; it is never shown or saved.
        self.provisional: LinearModel | None = None
        self._provisional_on: str | None = None
        self.curve: list[ModelInfo] = []
        # Set whenever the labels in force, or the features they train on, change.
        self.labels_changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._trained_on: str | None = None  # the fingerprint of the model in use

    async def load_history(self) -> None:
        self.curve = await asyncio.to_thread(self.registry.history)

    def use_extractor(self, extractor: ExtractorRecord) -> bool:
        """Models serve only the features they were trained on: on another extractor the
        newest model of that one is taken up, or none, and training starts again. False
        when the model in use already fits."""
        if self.model_info is not None and self.model_info.extractor == extractor:
            return False
        self.model, self.model_info = None, None
        self._trained_on = None
        found = self.registry.active_compatible(extractor)  # a pinned model, or the newest
        if found is not None:
            self.model, self.model_info = found
            # Nothing to train again unless the labels changed while it was stopped.
            self._trained_on = self.registry.newest_fingerprint(extractor) or None
            log.info("model loaded", extra={"model_version": self.model_info.version})
        self.labels_changed.set()
        return True

    def training_set(self) -> tuple[list[str], np.ndarray]:
        """Pool annotations in force whose features are known. Gold and evaluation
        answers never train, nor do audit answers. (An item of the audit reserve labelled
        some other way, through the API, trains like any other and leaves the audit's
        population: no label goes to waste.)"""
        ids, labels = [], []
        bank = self.features.bank
        for item_id in self.labels.active:
            record = self.labels.current(item_id)
            if (record is not None and record.split == Split.POOL and item_id in bank
                    and record.label in (Label.POSITIVE, Label.NEGATIVE)
                    and record.strategy != Strategy.AUDIT):
                ids.append(item_id)
                labels.append(1 if record.label == Label.POSITIVE else 0)
        return ids, np.asarray(labels, dtype=int)

    def known_set(self, split_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(row indices into the feature bank, labels) of embedded validation or
        evaluation items."""
        bank = self.features.bank
        ids = [i for i in split_ids if i in bank]
        y = np.asarray([1 if self.catalog.items[i].known_label == Label.POSITIVE else 0
                        for i in ids], dtype=int)
        return bank.row_indices(ids), y

    async def run(self) -> None:
        """The background loop: train once the labels have settled."""
        while True:
            await self.labels_changed.wait()
            await settle(self.labels_changed, self.config.debounce_s,
                         self.config.train_max_delay_s)
            try:
                await self.retrain(force=False)
            except Exception:
                log.exception("training failed")

    async def retrain(self, force: bool = True) -> tuple[ModelInfo | None, bool]:
        """Trains on the labels in force; returns (the model in use, whether it is new).
        `force` (an explicit request) first waits for the labels' features."""
        if force:
            await self._await_labelled_features(LABELLED_WAIT_S)
        async with self._lock:
            extractor = self.features.extractor
            ids, y = self.training_set()
            positives, negatives = int(y.sum()), int(len(y) - y.sum())
            if extractor is None or not enough(positives, negatives, self.config,
                                               self.guided):
                log.info("not enough labels for a model", extra={
                    "positives": positives, "negatives": negatives,
                    "needed": self.config.min_per_class})
                if extractor is not None and positives and negatives and self.model is None:
                    await self._train_provisional(ids, y)
                return self.model_info, False
            trained_on = training_fingerprint(ids, y)
            if trained_on == self._trained_on:
                # The same labels make the same model: nothing to train.
                return self.model_info, False
            bank = self.features.bank
            rows = bank.row_indices(ids)
            val_rows, y_val = self.known_set(self.catalog.validation)
            eval_rows, y_eval = self.known_set(self.catalog.evaluation)
            matrix = bank.matrix
            started = time.perf_counter()
            model, validation, evaluation = await asyncio.to_thread(
                fit_and_measure, matrix, rows, y, val_rows, y_val, eval_rows, y_eval,
                self.config, self.guided)
            seconds = time.perf_counter() - started
            metrics.TRAIN_SECONDS.observe(seconds)
            info = ModelInfo(self.registry.next_version(), dict(extractor), len(ids),
                             self.labels.version, validation, evaluation,
                             train_seconds=round(seconds, 3), fingerprint=trained_on,
                             labels_given=self.labels_given(), positives=positives,
                             negatives=negatives)
            await asyncio.to_thread(self.registry.save, model, info)
            self.curve.append(info)
            metrics.MODELS.labels("true").inc()
            self._trained_on = trained_on
            log.info("model trained", extra={"model_version": info.version, "labels": len(ids),
                                             "seconds": info.train_seconds})
            if self.registry.holds(self.model_info):  # a rollback pins the model in use
                self.notify()
                return self.model_info, False
            self.model, self.model_info, self.provisional = model, info, None
            await self.on_adopted()
            self.notify()
            return self.model_info, True

    @property
    def guided(self) -> bool:
        """Whether a detector class guides the task (its evidence is in every vector)."""
        extractor = self.features.extractor or {}
        return int(extractor.get("evidence_row", 0)) >= 0

    def labels_given(self) -> int:
        """Every annotation in force: what the person has spent, whatever it was for."""
        return len(self.labels.active)

    async def _train_provisional(self, ids: list[str], y: np.ndarray) -> None:
        fingerprint = training_fingerprint(ids, y)
        if fingerprint == self._provisional_on:
            return
        bank = self.features.bank
        self.provisional = await asyncio.to_thread(
            fit, bank.matrix, bank.row_indices(ids), y, self.config, self.guided)
        self._provisional_on = fingerprint
        await self.on_adopted()

    async def _await_labelled_features(self, timeout_s: float) -> None:
        """An explicit retrain first lets the labels' pending extractions finish."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(
                p == LABELLED for p in self.features.pending.values()):
            await asyncio.sleep(0.1)


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


def training_fingerprint(ids: list[str], y: np.ndarray) -> str:
    """Names a training set (its items and labels), whatever the order they came in."""
    digest = hashlib.sha256()
    for item_id, label in sorted(zip(ids, y.tolist(), strict=True)):
        digest.update(f"{item_id}\0{label}\n".encode())
    return digest.hexdigest()[:16]


def enough(positives: int, negatives: int, config: Config, guided: bool) -> bool:
    """Whether the training labels make a model to show and use: with the detector's
    prior (a `guided` task), any label; else `min_per_class` of each class (fewer make
    at most a provisional one, which only ranks the cold start)."""
    if guided and config.detector_prior is not None:
        return positives + negatives >= 1
    return positives >= config.min_per_class and negatives >= config.min_per_class


def fit(matrix: np.ndarray, rows: np.ndarray, y: np.ndarray, config: Config,
        guided: bool) -> LinearModel:
    """The model of the labelled `rows` of `matrix` (the task's vectors: the embedding,
    then its detector class's evidence), as the trainer makes it: around the detector's
    prior where a detector class guides the task."""
    population = population_moments(matrix)
    if guided and config.detector_prior is not None:
        return train_with_prior(matrix[rows], y, DetectorPrior(*config.detector_prior),
                                c=config.model_c, evidence_weight=config.evidence_weight,
                                evidence_dim=EVIDENCE_DIM, population=population)
    return train(matrix[rows], y, c=config.model_c, evidence_weight=config.evidence_weight,
                 evidence_dim=EVIDENCE_DIM, seed=config.seed, population=population)


def fit_and_measure(matrix: np.ndarray, rows: np.ndarray, y: np.ndarray, val_rows: np.ndarray,
                    y_val: np.ndarray, eval_rows: np.ndarray, y_eval: np.ndarray,
                    config: Config, guided: bool) -> tuple[LinearModel, Metrics, Metrics]:
    """Training and its metrics, on a worker thread: the rows are gathered there too, so
    the event loop never copies a large feature matrix. The known splits only measure:
    nothing about the model is chosen on them."""
    x_val, x_eval = matrix[val_rows], matrix[eval_rows]
    model = fit(matrix, rows, y, config, guided)
    validation = measure(y_val, model.probability(x_val), model.threshold)
    evaluation = measure(y_eval, model.probability(x_eval), model.threshold)
    return model, validation, evaluation
