"""One task of the trainer behind the thin gRPC servicer: it wires the task's parts (labels,
training, live score, ranking and leasing, the annotators' checks, outputs) over what
every task shares (`shared`: the database, the catalogue, the features and their
extraction), and holds what the servicer calls, in plain arguments and `domain` records."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc

from trainer_service.annotators.checks import Checks
from trainer_service.annotators.consistency import Rechecks
from trainer_service.annotators.label_errors import LabelReview
from trainer_service.config import Config
from trainer_service.datasets import Catalog
from trainer_service.datasets.images import item_image
from trainer_service.domain import (
    ANSWERS,
    Annotation,
    DatasetKind,
    Estimate,
    Label,
    LeasedItem,
    LoadingProgress,
    LoadingState,
    ModelSummary,
    Recorded,
    Split,
    Status,
    Strategy,
    TrainerError,
)
from trainer_service.features.extraction import Extraction
from trainer_service.features.records import ExtractorRecord
from trainer_service.features.store import LABELLED, TaskFeatures
from trainer_service.intake import Intake
from trainer_service.loading import Loading, configured_dataset, drain, known_labels
from trainer_service.models.training import Training
from trainer_service.outputs.model_outputs import ModelOutputs
from trainer_service.quality.evaluation import Evaluation
from trainer_service.selection.leasing import Sampler, leased_item
from trainer_service.selection.near_duplicates import NearDuplicates
from trainer_service.selection.ranking import Ranker
from trainer_service.selection.serving import Admission, evidence
from trainer_service.shared import Listener, Shared
from trainer_service.status import StatusFeed, build_status, model_summary
from trainer_service.store.database import Database
from trainer_service.store.labels import LabelLog
from trainer_service.store.served import ServedLog
from trainer_service.tasks.evidence import feature_task, task_features
from trainer_service.tasks.spec import TaskError, TaskSpec, settings_task, task_config

# New features change the estimate's population a little: it is recomputed this long after.
FEATURES_REFRESH_S = 5.0


class Trainer:
    def __init__(self, config: Config, shared: Shared | None = None,
                 spec: TaskSpec | None = None) -> None:
        """One task (`spec`, by default the one the settings describe) over `shared` (by
        default its own, opened and closed with it)."""
        self.spec = spec or settings_task(config)
        self.shared = shared or Shared(config)
        self._owns_shared = shared is None
        self.config = config = task_config(config, self.spec)
        self.data_dir = self.shared.task_dir(self.spec.name)
        # Tasks that read the dataset's known labels alike share its catalogue; another
        # positive class reads the dataset again into a catalogue of its own.
        self._own_catalog = known_labels(config) != known_labels(self.shared.config)
        self.catalog = Catalog() if self._own_catalog else self.shared.catalog
        self.sampler = Sampler(config.mix, config.lease_s)
        self.feed = StatusFeed(self._build_status)
        # Opened by `open`: they need the data folder's database.
        self.database: Database
        self.labels: LabelLog
        self.served: ServedLog
        self.intake: Intake
        self.features: TaskFeatures
        self.extraction: Extraction
        self.training: Training
        self.evaluation: Evaluation
        self.ranker: Ranker
        self.loading: Loading
        self.checks: Checks
        self.review: LabelReview
        self.rechecks: Rechecks
        self.duplicates: NearDuplicates
        self.outputs: ModelOutputs
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Opens the task's labels and models, and waits for its dataset's first part."""
        config, notify, shared = self.config, self.feed.notify, self.shared
        if not shared.opened:
            await shared.open(self.spec.name, feature_task(config))
        self.database, self.extraction = shared.database, shared.extraction
        self.labels = await asyncio.to_thread(LabelLog, self.database, self.spec.name)
        self.features = await task_features(shared.features, config)
        self.served = await asyncio.to_thread(ServedLog, self.database, config.answer_grace_s,
                                              self.spec.name)
        self.checks = Checks(self.catalog, self.labels)
        self.training = Training(config, self.data_dir / "models", self.catalog, self.labels,
                                 self.features, on_adopted=self._on_adopted, notify=notify)
        self.evaluation = Evaluation(config, self.catalog, self.features, self.labels,
                                     self.training, notify, shared.reserve)
        self.duplicates = NearDuplicates(config.near_duplicate, self.features, self.labels,
                                         shared.units)
        self.ranker = Ranker(self.catalog, self.features, self.training, self.available,
                             self.sampler.install, config.seed, self.evaluation,
                             screen=self.duplicates.screen)
        self.review = LabelReview(self.catalog, self.labels, self.features, config.seed)
        self.rechecks = Rechecks(self.catalog, self.labels, self.checks, config.recheck_gap,
                                 config.seed)
        self.sampler.add_source(Strategy.REVIEW, config.review_share, self.review.candidates)
        self.sampler.add_source(Strategy.RECHECK, config.recheck_share,
                                self.rechecks.candidates)
        self.loading = shared.loading
        if self._own_catalog:
            self.loading = Loading(config, shared.data_dir / "datasets", self.catalog,
                                   shared.features, notify, dataset=shared.catalog)
        self.intake = Intake(self.catalog, self.labels, self.served, self.features,
                             self.sampler, self.duplicates, self.training, self.evaluation,
                             notify)
        self.outputs = ModelOutputs(
            config, self.catalog, self.features, self.training, self.labels, self.extraction,
            estimate=self.model_estimate, on_features=shared.on_features,
            notify=self.feed.notify)
        shared.attach(self, Listener(self._on_features, self._on_extractor, notify))
        await self.training.load_history()
        if self.features.extractor is not None:
            self._on_extractor(self.features.extractor)
        if self._own_catalog:
            # After the dataset's own reading: what the two share is then kept once.
            await shared.loading.ended.wait()
            kind, location = configured_dataset(config)
            self._tasks.append(asyncio.create_task(drain(self.loading.load(kind, location))))
        self._tasks.append(asyncio.create_task(self.training.run(), name="training"))
        await self.loading.first_part.wait()
        await self._enqueue_labelled()
        await self.ranker.rerank()

    def unreadable(self) -> str:
        """Why the task's own reading of the dataset failed (a column it names is
        missing, say); empty when it reads the dataset's catalogue or read its own."""
        failed = self._own_catalog and self.catalog.state == LoadingState.FAILED
        return self.catalog.progress.message if failed else ""

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.feed.close()
        await self.review.close()
        await self.outputs.close()
        await self.ranker.close()
        await self.evaluation.close()
        self.shared.detach(self)
        if self._owns_shared:
            await self.shared.close()

    def load(self, kind: DatasetKind, location: str) -> AsyncIterator[LoadingProgress]:
        """Loads more of the dataset into the catalogue every task of its labels shares."""
        return self.shared.loading.load(kind, location)

    async def _enqueue_labelled(self) -> None:
        """Labelled items still without features (e.g. after a crash) are extracted first."""
        missing = [i for i in self.labels.active if i not in self.features.bank]
        if missing:
            await self.features.enqueue(missing, LABELLED)

    # -- what the parts tell each other ----------------------------------------------------

    def _on_features(self, ids: list[str]) -> None:
        if any((r := self.labels.current(i)) is not None and r.split == Split.POOL
               for i in ids):
            self.training.labels_changed.set()
        self.ranker.schedule()
        if self.training.model is not None:
            self.evaluation.schedule(FEATURES_REFRESH_S)  # the population grew
        self.feed.notify()

    def _on_extractor(self, stored: ExtractorRecord) -> None:
        """The features changed (`stored`, every class's); the task's own record, its
        class's row, follows from it."""
        del stored
        extractor = self.features.extractor
        if extractor is not None and self.training.use_extractor(extractor):
            self.ranker.schedule()

    async def _on_adopted(self) -> None:
        if self.training.model is not None:
            # Before ranking: the audit draws follow the new model's estimate.
            await self.evaluation.refresh()
        if self.config.review_share > 0:
            self.review.schedule()
        await self.ranker.rerank()

    def available(self, item_id: str) -> bool:
        """Whether an item may be served as new: nobody answered it (a skip is no answer),
        and it is not known to be unreadable."""
        return item_id not in self.labels.active and item_id not in self.features.failed

    # -- annotations ---------------------------------------------------------------------

    async def add_annotation(self, annotation_id: str, item_id: str, label: Label,
                             annotator: str, duration_ms: int = 0, note: str = "",
                             given_at: float | None = None) -> Recorded:
        return await self.intake.add(annotation_id, item_id, label, annotator, duration_ms,
                                     note, given_at)

    async def undo_annotation(self, annotation_id: str, annotator: str) -> Annotation:
        return await self.intake.undo(annotation_id, annotator)

    def export(self, include_undone: bool, include_skipped: bool = False) -> list[Annotation]:
        return exported(self.labels, include_undone, include_skipped)

    # -- serving -------------------------------------------------------------------------

    async def next_items(self, annotator: str, count: int,
                         held_item_ids: list[str] | tuple[str, ...] = ()) -> list[LeasedItem]:
        if not annotator:
            raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT, "annotator is required")
        if count < 0:
            raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT, "count must be >= 0")
        count = min(count or 1, self.config.max_items_per_call)
        self.sampler.expire()
        guard = self.duplicates.guard(list(self.sampler.leases), count)
        admission = Admission(self.labels.passed_by(annotator), guard)
        now = time.time()
        leases = self.sampler.lease(annotator, count, held_item_ids, self.available, now=now,
                                    admission=admission)
        # On disk before the annotator sees them: only what was served may be answered.
        await self.intake.leased(annotator, leases, held_item_ids, now)
        bank, dims = self.features.bank, self.features.embedding_dimension
        return [leased_item(lease, self.catalog.items[lease.item_id],
                            evidence(bank, lease.item_id, dims)) for lease in leases]

    async def image(self, item_id: str, thumbnail: bool) -> tuple[bytes, str]:
        return await item_image(self.catalog, item_id, thumbnail)

    async def retrain(self, force: bool = True) -> tuple[ModelSummary | None, bool]:
        """Trains now; returns (the model in use, whether it is the new one), with the
        model's live estimate from every label there is now."""
        info, adopted = await self.training.retrain(force)
        if info is None:
            return None, adopted
        if not adopted:  # a new model was estimated as it was adopted; this one may lag
            await self.evaluation.refresh()
        return model_summary(info, self.evaluation.estimates.get(info.version)), adopted

    # -- status --------------------------------------------------------------------------

    def _build_status(self) -> Status:
        status = build_status(self.config, self.catalog, self.labels, self.features,
                              self.extraction, self.training, self.evaluation, self.checks)
        counts = status.counts
        counts.skipped, counts.unsure = self.labels.pass_counts()
        counts.reviewed, counts.corrected, counts.contested = self.review.counts()
        return replace(status, annotators=self.rechecks.stats(),
                       scoring=self.outputs.scoring.progress)

    def status(self) -> Status:
        return self._build_status()

    def watch(self, min_interval_s: float = 0.25) -> AsyncIterator[Status]:
        return self.feed.watch(min_interval_s)

    def model_estimate(self, version: str) -> Estimate | None:
        """A model's live quality estimate, where the last refresh measured one."""
        return self.evaluation.estimates.get(version)


def exported(labels: LabelLog, include_undone: bool, include_skipped: bool) -> list[Annotation]:
    """A task's annotations, oldest first, as ExportLabels sends them."""
    return [a for a in labels.annotations.values()
            if (include_undone or not a.undone) and (include_skipped or a.label in ANSWERS)]


async def open_task(config: Config, shared: Shared, spec: TaskSpec) -> Trainer:
    """The task `spec`, opened over `shared`; TaskError when its own reading of the
    dataset failed (it could serve nothing)."""
    trainer = Trainer(config, shared, spec)
    try:
        await trainer.open()
        if trainer.unreadable():
            raise TaskError(f"task {spec.name!r}: {trainer.unreadable()}")
    except BaseException:
        # A failure before its parts were made (they attach to `shared` last) leaves
        # nothing else to close.
        with contextlib.suppress(AttributeError):
            await trainer.close()
        raise
    return trainer
