"""The dataset scoring job: embeds every item still without features, in bulk through
the feature service's EmbedStream, then scores the whole dataset with the model in use.

The background extraction keeps only a sample of the pool embedded (enough to rank); this
job is for predictions of every item. Its results go to the same feature store, so they
survive a restart and also widen what the ranker chooses from. Items that fail for good
are recorded as failed like any other; retryable failures get a few more passes, and a
second run picks up whatever is still missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from trainer_service.datasets import Catalog
from trainer_service.domain import ScoringProgress, ScoringState
from trainer_service.features.calls import (
    FeatureServiceError,
    FeatureStub,
    describe,
    embed_stream,
)
from trainer_service.features.records import Embedded
from trainer_service.features.store import TaskFeatures
from trainer_service.features.task_evidence import Task

log = logging.getLogger(__name__)

# Items per stream call: a broken stream costs at most this much work again.
SEGMENT = 2048
PASSES = 3
# Time allowed per item of a stream, on top of the per-call deadline.
SECONDS_PER_ITEM = 2.0


class ScoringJob:
    def __init__(self, catalog: Catalog, features: TaskFeatures, stub: FeatureStub,
                 task: Task, *, batch: int, deadline_s: float,
                 score: Callable[[], Awaitable[int | None]],
                 on_features: Callable[[list[str]], None],
                 notify: Callable[[], None]) -> None:
        self.catalog, self.features, self.stub, self.task = catalog, features, stub, task
        self.batch, self.deadline_s = batch, deadline_s
        self.score, self.on_features, self.notify = score, on_features, notify
        self.progress: ScoringProgress | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> ScoringProgress:
        """Starts the job unless it runs already; returns its progress."""
        if not self.running:
            self.progress = ScoringProgress(ScoringState.RUNNING, message="starting",
                                            start_time=time.time())
            self._task = asyncio.create_task(self._run(), name="scoring")
        assert self.progress is not None
        return self.progress

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _set(self, **changes: object) -> None:
        """Updates the progress, with the rate and time left over the job so far."""
        assert self.progress is not None
        p = replace(self.progress, **changes)  # type: ignore[arg-type]
        done = p.embedded + p.failed
        elapsed = time.time() - p.start_time
        rate = done / elapsed if elapsed > 0 and done else 0.0
        left = max(p.total - done, 0)
        eta = left / rate if rate else (0.0 if left == 0 else -1.0)
        self.progress = replace(p, items_per_second=rate, eta_seconds=eta)
        self.notify()

    async def _run(self) -> None:
        try:
            left = await self._embed_missing()
            self._set(message="scoring every embedded item")
            scored = await self.score()
            later = (f"; {left} items could not be embedded now (retryable errors): run "
                     "the job again later" if left else "")
            if scored is None:
                self._set(state=ScoringState.DONE,
                          message=f"embedded; no model to score with yet{later}")
            else:
                self._set(state=ScoringState.DONE, scored=scored,
                          message=f"{scored} items scored{later}")
            log.info("dataset scored", extra={"items": scored, "left": left})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the job's failure is reported, never the service's
            detail = str(exc) if isinstance(exc, (FeatureServiceError, JobError)) else repr(exc)
            log.warning("dataset scoring failed", extra={"error": detail})
            self._set(state=ScoringState.FAILED, message=f"stopped: {detail}")

    async def _embed_missing(self) -> int:
        """Embeds what is missing; returns how many items are left to retry later."""
        extractor = await describe(self.stub, self.task)
        if extractor != self.features.extractor:
            raise JobError("the feature service's extractor is not the one the trainer "
                           "uses yet; try again once it has taken it up")
        needs = self.features.needs_features
        todo = [i for i in list(self.catalog.items) if needs(i)]
        self._set(total=len(todo), message=f"embedding {len(todo)} items")
        for attempt in range(PASSES):
            retry: list[str] = []
            for start in range(0, len(todo), SEGMENT):
                retry += await self._segment(todo[start:start + SEGMENT])
            todo = [i for i in retry if needs(i)]
            if not todo:
                return 0
            if attempt + 1 < PASSES:
                await asyncio.sleep(2.0 * (attempt + 1))
        return len(todo)

    async def _segment(self, ids: list[str]) -> list[str]:
        """Embeds one segment; returns the ids to try again."""
        items = self.catalog.items
        segment = [items[i] for i in ids if i in items]
        unreadable: list[tuple[str, str]] = []
        seen: set[str] = set()
        retry: list[str] = []
        deadline = self.deadline_s + SECONDS_PER_ITEM * len(segment)
        try:
            async for results in embed_stream(self.stub, segment,
                                              self.batch, deadline,
                                              self.features.extractor or {}, unreadable):
                seen.update(r.id for r in results)
                retry += await self._save(results)
        except FeatureServiceError as exc:
            log.warning("scoring stream broken; its rest is retried",
                        extra={"error": str(exc)})
            retry += [i.id for i in segment if i.id not in seen]
        if unreadable:
            await self.features.save([], unreadable)
            self._set(failed=self.progress.failed + len(unreadable))  # type: ignore[union-attr]
        return retry

    async def _save(self, results: list[Embedded]) -> list[str]:
        done, failed, retry = [], [], []
        for r in results:
            if r.stored is not None:
                done.append((r.id, r.stored.tobytes()))
            elif r.error is not None and r.error.retryable:
                retry.append(r.id)
            else:
                kind = r.error.kind if r.error else "INTERNAL"
                failed.append((r.id, f"{kind}: {r.error.message if r.error else ''}"))
        await self.features.save(done, failed)
        if done:
            self.on_features([i for i, _ in done])
        p = self.progress
        assert p is not None
        self._set(embedded=p.embedded + len(done), failed=p.failed + len(failed))
        return retry


class JobError(Exception):
    pass
