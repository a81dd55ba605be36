"""Annotations coming in, and what was served for them: every serving is recorded
(`store.served`) before the annotator sees it; an answer is taken only for an item served
to its annotator (or as a change of their own), written with the extraction it needs in
one transaction, and the other parts are told once it is on disk. Undo, and an admin's
bulk import: each label under the admin's name with the strategy `IMPORTED`, audited in
the log and counted like any other."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc

from trainer_service import metrics
from trainer_service.datasets import Catalog, Item
from trainer_service.domain import (
    ANSWERS,
    Annotation,
    GoldCheck,
    Label,
    LoadingState,
    Recorded,
    Split,
    Strategy,
    TrainerError,
)
from trainer_service.features.store import LABELLED, TaskFeatures
from trainer_service.models.training import Training
from trainer_service.quality.evaluation import Evaluation
from trainer_service.selection.leasing import Lease, Sampler
from trainer_service.selection.near_duplicates import NearDuplicates
from trainer_service.store.labels import LabelLog, NotYours, UnknownAnnotation
from trainer_service.store.served import Served, ServedLog, basis
from trainer_service.store.validation import check_annotation, given_time

log = logging.getLogger(__name__)

# One answer for every item an annotator may not answer, so that it tells a check, an
# evaluation item, another's item and a missing one apart from none of the others.
NOT_SERVED = "answers are taken only for items served to you"
TAKEN_ID = "this annotation id is taken; send the annotation with a new id"
MAX_IMPORT = 1000


@dataclass(frozen=True)
class ImportRow:
    annotation_id: str
    item_id: str
    label: Label
    note: str = ""


@dataclass(frozen=True)
class Imported:
    recorded: int
    duplicates: int
    refused: list[tuple[int, str]]  # (row index, why)


class Intake:
    def __init__(self, catalog: Catalog, labels: LabelLog, served: ServedLog,
                 features: TaskFeatures, sampler: Sampler, duplicates: NearDuplicates,
                 training: Training, evaluation: Evaluation,
                 notify: Callable[[], None]) -> None:
        self.catalog, self.labels, self.served = catalog, labels, served
        self.features, self.sampler, self.duplicates = features, sampler, duplicates
        self.training, self.evaluation, self.notify = training, evaluation, notify

    # -- what was served -----------------------------------------------------------------

    async def leased(self, annotator: str, leases: list[Lease], held: Iterable[str],
                     now: float) -> None:
        """Records new leases and the renewed leases of held items; on failure the new
        leases are given back (nobody saw them) and the call is retryable."""
        renewed = [i for i in held if (lease := self.sampler.leases.get(i)) is not None
                   and lease.annotator == annotator]
        fresh = [(lease.item_id, Served(lease.strategy, lease.model_version, now,
                                        lease.expires)) for lease in leases]
        try:
            await self.served.record(annotator, fresh, renewed, now + self.sampler.lease_s)
        except Exception:
            log.exception("could not record the items served", extra={"items": len(fresh)})
            for lease in leases:
                self.sampler.release(lease.item_id)
            raise TrainerError(grpc.StatusCode.UNAVAILABLE,
                               "the items could not be leased; retry") from None

    async def shown(self, annotator: str, item_ids: Iterable[str]) -> None:
        """Items listed for an annotator to answer outside the sampling mix (the review
        page): served to them with no strategy, unless served to them already."""
        if not annotator:
            return
        now = time.time()
        expires = now + self.sampler.lease_s
        fresh = [(i, Served(Strategy.UNSPECIFIED, "", now, expires)) for i in item_ids
                 if not self.served.live(annotator, i, now)]
        await self.served.record(annotator, fresh)

    # -- answers -------------------------------------------------------------------------

    async def add(self, annotation_id: str, item_id: str, label: Label, annotator: str,
                  duration_ms: int = 0, note: str = "",
                  given_at: float | None = None) -> Recorded:
        """`given_at`: when the annotator gave it, as their client kept it (bounded by
        `given_time`); None: now."""
        check_annotation(annotation_id, label, annotator, duration_ms, note)
        known = self.labels.annotations.get(annotation_id)
        if known is not None:  # a retry: the same answer, whatever it says now
            return self._repeat(known, annotator)
        why = basis(self.served.answerable(annotator, item_id),
                    self.labels.latest(annotator, item_id))
        if why is None:
            raise TrainerError(grpc.StatusCode.PERMISSION_DENIED, NOT_SERVED)
        item = self._item(item_id)
        if item.split == Split.EVALUATION:  # never served; an old log might say otherwise
            raise TrainerError(grpc.StatusCode.PERMISSION_DENIED, NOT_SERVED)
        strategy, version = why
        return await self._record(Annotation(annotation_id, item.id, Label(label), annotator,
                                             strategy, version, duration_ms, item.split,
                                             given_time(given_at, time.time()), note=note))

    def _item(self, item_id: str) -> Item:
        item = self.catalog.get(item_id)
        if item is None and self.catalog.state == LoadingState.LOADING:
            # After a restart the item may be in the part of the dataset not read yet: a
            # retry will find it, whereas NOT_FOUND would make the client drop the label.
            raise TrainerError(grpc.StatusCode.UNAVAILABLE, f"no item {item_id!r} yet: the dataset "
                               "is still loading; retry shortly")
        if item is None:
            raise TrainerError(grpc.StatusCode.NOT_FOUND, f"no item {item_id!r}")
        return item

    def _repeat(self, known: Annotation, annotator: str) -> Recorded:
        if known.annotator != annotator:
            raise TrainerError(grpc.StatusCode.ALREADY_EXISTS, TAKEN_ID)
        metrics.ANNOTATIONS.labels(f"SPLIT_{Split(known.split).name}", "duplicate").inc()
        return Recorded(known, True, self._gold(known))

    def _gold(self, record: Annotation) -> GoldCheck | None:
        """The known answer, for a check served to this annotator as one, once answered."""
        item = self.catalog.items.get(record.item_id)
        if (item is None or not item.known_label or record.split != Split.VALIDATION
                or record.strategy != Strategy.GOLD or record.label not in ANSWERS):
            return None
        return GoldCheck(item.known_label, record.label == item.known_label)

    async def _record(self, record: Annotation) -> Recorded:
        answer = record.label in ANSWERS
        # A pass never trains, so it needs no features.
        needs_features = answer and self.features.needs_features(record.item_id)
        started = time.perf_counter()
        # The extraction a new label needs is queued in the annotation's own transaction.
        joined = self.features.queue_with(record.item_id, LABELLED) if needs_features else None
        stored, duplicate = await self.labels.add(record, joined)
        metrics.ACK_SECONDS.observe(time.perf_counter() - started)
        if duplicate:  # the same id in flight twice
            return self._repeat(stored, record.annotator)
        metrics.ANNOTATIONS.labels(f"SPLIT_{Split(stored.split).name}", "recorded").inc()
        lease = self.sampler.leases.get(stored.item_id)
        if lease is not None and lease.annotator == stored.annotator:
            self.sampler.release(stored.item_id)
        if answer:
            self.duplicates.answered(stored.item_id)
        if answer and not needs_features and stored.split == Split.POOL:
            self.training.labels_changed.set()
        if stored.strategy == Strategy.AUDIT:
            self.evaluation.schedule()
        self.notify()
        return Recorded(stored, False, self._gold(stored))

    async def undo(self, annotation_id: str, annotator: str) -> Annotation:
        try:
            record = await self.labels.undo(annotation_id, annotator)
        except UnknownAnnotation:
            raise TrainerError(grpc.StatusCode.NOT_FOUND,
                               f"no annotation {annotation_id!r}") from None
        except NotYours:
            raise TrainerError(grpc.StatusCode.PERMISSION_DENIED,
                               f"annotation {annotation_id!r} belongs to another annotator"
                               ) from None
        if record.split == Split.POOL and record.label in ANSWERS:
            self.training.labels_changed.set()
        if record.strategy == Strategy.AUDIT:
            self.evaluation.schedule()
        self.notify()
        return record

    # -- an admin's import -----------------------------------------------------------------

    async def import_labels(self, importer: str, rows: list[ImportRow]) -> Imported:
        """Records each acceptable row (pool items, yes or no) under `importer`'s name;
        every other row is refused on its own, with why."""
        if not importer:
            raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT, "importer is required")
        if len(rows) > MAX_IMPORT:
            raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"at most {MAX_IMPORT} labels per import")
        refused: list[tuple[int, str]] = []
        records: list[tuple[int, Annotation]] = []
        duplicates = 0
        for index, row in enumerate(rows):
            try:
                record = self._imported(importer, row)
            except TrainerError as exc:
                refused.append((index, str(exc)))
                continue
            if record is None:
                duplicates += 1
            else:
                records.append((index, record))
        # Written together: the log commits them in few transactions.
        results = await asyncio.gather(*(self._record(r) for _, r in records),
                                       return_exceptions=True)
        recorded = 0
        for (index, _), result in zip(records, results, strict=True):
            if isinstance(result, TrainerError):
                refused.append((index, str(result)))
            elif isinstance(result, BaseException):
                raise result
            elif result.duplicate:
                duplicates += 1
            else:
                recorded += 1
        log.info("labels imported", extra={"importer": importer, "recorded": recorded,
                                           "duplicates": duplicates, "refused": len(refused)})
        return Imported(recorded, duplicates, sorted(refused))

    def _imported(self, importer: str, row: ImportRow) -> Annotation | None:
        """The record of one import row; None for a row recorded already."""
        check_annotation(row.annotation_id, row.label, importer, 0, row.note)
        if row.label not in ANSWERS:
            raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT,
                               "an imported label is positive or negative")
        known = self.labels.annotations.get(row.annotation_id)
        if known is not None:
            self._repeat(known, importer)
            return None
        item = self.catalog.get(row.item_id)
        if item is None:
            raise TrainerError(grpc.StatusCode.NOT_FOUND, f"no item {row.item_id!r}")
        if item.split != Split.POOL:
            raise TrainerError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"item {row.item_id!r} has a known label: only pool items "
                               "take imported labels")
        return Annotation(row.annotation_id, item.id, row.label, importer, Strategy.IMPORTED,
                          "", 0, Split.POOL, time.time(), note=row.note)
