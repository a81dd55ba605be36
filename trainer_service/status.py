"""The trainer's status (task, loading, counts, model, learning curve, extraction) and
the feed that tells watchers when it changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from trainer_service import metrics
from trainer_service.annotators.checks import Checks
from trainer_service.config import Config
from trainer_service.datasets import Catalog
from trainer_service.domain import (
    Counts,
    Estimate,
    ExtractionProgress,
    Label,
    ModelSummary,
    Split,
    Status,
    Strategy,
)
from trainer_service.features.extraction import Extraction
from trainer_service.features.store import TaskFeatures
from trainer_service.models.registry import ModelInfo
from trainer_service.models.training import Training
from trainer_service.quality.evaluation import Evaluation
from trainer_service.store.labels import LabelLog


def model_summary(info: ModelInfo, estimate: Estimate | None = None,
                  pinned: bool = False) -> ModelSummary:
    return ModelSummary(info.version, info.labels, info.validation, info.evaluation,
                        info.create_time, info.labels_given, estimate, pinned)


def build_status(config: Config, catalog: Catalog, labels: LabelLog, features: TaskFeatures,
                 extraction: Extraction, training: Training,
                 evaluation: Evaluation, checks: Checks) -> Status:
    counts = Counts(items=len(catalog), pool=len(catalog.pool),
                    validation=len(catalog.validation), evaluation=len(catalog.evaluation))
    items = catalog.items
    bank = features.bank
    for i in bank.ids:
        split = items[i].split if i in items else Split.UNSPECIFIED
        if split == Split.POOL:
            counts.embedded += 1
            if evaluation.reserved(i):
                counts.audit_embedded += 1
        elif split == Split.VALIDATION:
            counts.validation_embedded += 1
        elif split == Split.EVALUATION:
            counts.evaluation_embedded += 1
    counts.audit_reserve = evaluation.reserve_size()
    for item_id in labels.active:
        record = labels.current(item_id)
        if record is None:
            continue
        if record.split == Split.POOL:
            if record.strategy == Strategy.AUDIT:
                counts.audit_labels += 1
            elif record.label == Label.POSITIVE:
                counts.labelled_positive += 1
            elif record.label == Label.NEGATIVE:
                counts.labelled_negative += 1
    # Checks count first answers, not the labels in force (see checks.py).
    counts.gold_checks, counts.gold_agreements = checks.totals()
    metrics.PENDING.set(len(features.pending))
    metrics.EMBEDDED.set(len(features.bank))
    info = training.model_info
    return Status(
        label_id=config.label_id, display_name=config.display_name, task=config.task,
        question=config.question, loading=catalog.loading(),
        counts=counts, target_f1=config.target_f1,
        extraction=ExtractionProgress(len(features.pending), extraction.seconds_per_item,
                                      extraction.eta_seconds(), len(features.failed),
                                      extraction.retrying),
        model=(model_summary(info, evaluation.estimates.get(info.version),
                             training.registry.holds(info))
               if info is not None else None),
        learning_curve=[model_summary(i, evaluation.estimates.get(i.version))
                        for i in training.curve],
        forecast=evaluation.forecast, min_per_class=config.min_per_class)


class StatusFeed:
    """Watchers get the status now and again after every change, at most every
    `min_interval_s`; any number of them share one status built per change."""

    def __init__(self, build: Callable[[], Status]) -> None:
        self.build = build
        self._changed = asyncio.Condition()
        self._serial = 0
        self._wake_pending = False
        self._cache: tuple[int, Status] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def notify(self) -> None:
        self._serial += 1
        if not self._wake_pending:  # one wake-up serves any number of changes
            self._wake_pending = True
            task = asyncio.create_task(self._wake_watchers())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _wake_watchers(self) -> None:
        self._wake_pending = False
        async with self._changed:
            self._changed.notify_all()

    def shared(self) -> Status:
        """The status for watchers: built once per change, however many are watching."""
        if self._cache is None or self._cache[0] != self._serial:
            self._cache = (self._serial, self.build())
        return self._cache[1]

    async def watch(self, min_interval_s: float = 0.25) -> AsyncIterator[Status]:
        seen = -1
        while not self._closed:  # a closed feed (an archived task) ends its watches
            if seen != self._serial:
                seen = self._serial
                yield self.shared()
                await asyncio.sleep(min_interval_s)
                continue
            async with self._changed:
                if seen == self._serial:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 5.0)

    async def close(self) -> None:
        self._closed = True
        async with self._changed:
            self._changed.notify_all()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
