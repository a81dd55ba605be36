"""The feature-service client: a background worker that has the queued items embedded.

It asks the feature service for the pending items of the feature store: labelled items
first, then the pool candidates it adds itself to keep `prefetch` of the pool embedded,
which is what annotators wait for, with a share of each batch for validation and
evaluation items (`extraction_order.py`), and hands the results back to the store,
which persists them, so a restart resumes where it stopped. When the feature service is
down, nothing else waits: the worker backs off and tries again. Each call stays under the
message limits and items that keep failing are given up after a few tries
(`embed_plan.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import grpc

from hitl.channels import open_channel
from hitl.v1 import feature_pb2, feature_pb2_grpc
from trainer_service.datasets import Catalog, Item
from trainer_service.features.calls import add_image, stored_vector
from trainer_service.features.embed_plan import Retries, plan_batch
from trainer_service.features.order import ExtractionOrder
from trainer_service.features.records import (
    ExtractorRecord,
)
from trainer_service.features.store import FeatureStore
from trainer_service.features.task_evidence import (
    stored_record,
)

log = logging.getLogger(__name__)

SERVICE = "hitl.v1.FeatureService"
PERMANENT = {feature_pb2.ERROR_KIND_NOT_FOUND, feature_pb2.ERROR_KIND_BAD_IMAGE,
             feature_pb2.ERROR_KIND_TOO_LARGE, feature_pb2.ERROR_KIND_FORBIDDEN_URL,
             feature_pb2.ERROR_KIND_INVALID}
MAX_BACKOFF_S = 10.0
# A whole Embed call failing with these says nothing about the service being away: one of
# the images may be what breaks it, so each try counts against every image in the call.
WHOLE_CALL_FAILURES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# Embed calls under way at once: the feature service works on one batch while the trainer
# reads the next one's files and stores the last one's vectors (one at a time, the
# service waited on the trainer between calls).
CALLS_IN_FLIGHT = 2


class Extraction:
    def __init__(self, store: FeatureStore, catalog: Catalog, *, address: str,
                 batch: int, deadline_s: float, prefetch: int, seed: int = 0,
                 max_message_bytes: int = 64 << 20, max_attempts: int = 8,
                 retry_s: float = 2.0,
                 on_features: Callable[[list[str]], None] = lambda ids: None,
                 on_extractor: Callable[[ExtractorRecord], None] = lambda extractor: None) -> None:
        self.store, self.catalog = store, catalog
        self.channel = open_channel(address, SERVICE, default_deadline_s=deadline_s,
                                    max_message_bytes=max_message_bytes)
        # Requests stay under the smaller of our limit and the one the service reports.
        self.own_limit, self.service_limit = max_message_bytes, 0
        self.retries = Retries(max_attempts, retry_s)
        self.stub = feature_pb2_grpc.FeatureServiceStub(self.channel)
        self.order = ExtractionOrder(store, catalog, self.retries, batch=batch,
                                     prefetch=prefetch, seed=seed)
        self.on_features, self.on_extractor = on_features, on_extractor
        self.described = False
        self.seconds_per_item = 0.0
        self._last_end = 0.0  # when the last Embed call ended (perf_counter)
        self.in_flight: set[str] = set()  # items in an Embed call under way
        self._task: asyncio.Task[None] | None = None

    @property
    def message_budget(self) -> int:
        return min(self.own_limit, self.service_limit or self.own_limit)

    @property
    def retrying(self) -> int:
        return len(self.retries)

    def eta_seconds(self) -> float:
        pending = len(self.store.pending)
        if not pending:
            return 0.0
        return pending * self.seconds_per_item if self.seconds_per_item else -1.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="extraction")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.channel.close()

    async def _describe(self) -> None:
        response = await self.stub.Describe(feature_pb2.DescribeRequest(), timeout=10)
        self.service_limit = response.max_message_bytes
        described = stored_record(response.extractor)
        if described != self.store.stored:
            if self.store.stored is not None:
                log.warning("feature extractor changed: features of the old one are dropped "
                            "and extracted again", extra={"old": self.store.stored,
                                                          "new": described})
            dropped = await self.store.use_extractor(described)
            log.info("extractor", extra={"extractor": described, "dropped_features": dropped})
            self.on_extractor(described)
        self.described = True

    async def _run(self) -> None:
        backoff = 0.5
        calls: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    if not self.described:
                        await self._describe()
                    await self.order.top_up()
                    batch = (self.order.next_batch(self.in_flight)
                             if len(calls) < CALLS_IN_FLIGHT else [])
                    if batch:
                        calls.add(self._call(batch))
                        continue
                    if calls:  # the next batch waits for a call to end
                        done, calls = await asyncio.wait(
                            calls, return_when=asyncio.FIRST_COMPLETED)
                        errors = [e for call in done if (e := call.exception()) is not None]
                        if errors:
                            raise errors[0]
                        backoff = 0.5
                        continue
                    self.store.queued.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.store.queued.wait(),
                                               timeout=self.order.idle_s())
                except asyncio.CancelledError:
                    raise
                except grpc.aio.AioRpcError as exc:
                    log.warning("feature service unavailable; retrying", extra={
                        "code": exc.code().name, "detail": exc.details(),
                        "retry_in_s": backoff})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                except Exception:
                    log.exception("extraction failed; retrying")
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
        finally:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)

    def _call(self, batch: list[Item]) -> asyncio.Task[None]:
        """One Embed call under way; its items are in flight until it ends, however."""
        ids = {item.id for item in batch}
        self.in_flight |= ids
        call = asyncio.create_task(self._extract(batch), name="embed-call")
        call.add_done_callback(lambda _: self.in_flight.difference_update(ids))
        return call

    async def _extract(self, items: list[Item]) -> None:
        budget = self.message_budget
        plan = await asyncio.to_thread(plan_batch, items, budget)
        failed = list(plan.failed)
        request = feature_pb2.EmbedRequest(include_class_evidence=True)
        for item in plan.batch:
            try:
                await asyncio.to_thread(add_image, request.images, item)
            except OSError as exc:
                failed.append((item.id, f"unreadable: {exc.strerror or exc}"))
        while len(request.images) > 1 and request.ByteSize() > budget:
            del request.images[-1]  # a file grew since it was measured: it waits its turn
        results = []
        if request.images:
            started = time.perf_counter()
            try:
                response = await self.stub.Embed(request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in WHOLE_CALL_FAILURES:
                    failed += self._whole_call_failed(request, exc)
                    await self._save([], failed)
                raise
            results = list(response.results)
            # Calls overlap: the time since the previous call ended is what this one's
            # items cost (its own duration would count the overlap twice).
            now = time.perf_counter()
            per_item = (now - max(started, self._last_end)) / len(request.images)
            self._last_end = now
            self.seconds_per_item = (per_item if not self.seconds_per_item
                                     else 0.7 * self.seconds_per_item + 0.3 * per_item)
        done: list[tuple[str, bytes]] = []
        extractor = self.store.stored or {}
        dimension = int(extractor.get("stored_dimension", 0))
        for result in results:
            if result.WhichOneof("outcome") == "features":
                stored = stored_vector(result.features, extractor)
                if len(stored) != 4 * dimension:
                    failed.append((result.id, "feature vector of the wrong length"))
                else:
                    done.append((result.id, stored))
                continue
            reason = (feature_pb2.ErrorKind.Name(result.error.kind) + ": "
                      + result.error.message)
            if result.error.kind in PERMANENT or not result.error.retryable:
                failed.append((result.id, reason))
            elif (final := self.retries.failed(result.id, reason)) is not None:
                failed.append((result.id, final))
            else:
                log.info("item will be tried again", extra={
                    "item_id": result.id, "reason": reason,
                    "tries": self.retries.tries(result.id)})
        self.retries.forget([i for i, _ in done])
        await self._save(done, failed)
        if done:
            self.on_features([i for i, _ in done])

    def _whole_call_failed(self, request: feature_pb2.EmbedRequest,
                           exc: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
        reason = f"Embed failed: {exc.code().name}: {exc.details()}"
        alone = len(request.images) > 1
        return [(ref.id, final) for ref in request.images
                if (final := self.retries.failed(ref.id, reason, alone=alone)) is not None]

    async def _save(self, done: list[tuple[str, bytes]], failed: list[tuple[str, str]]) -> None:
        if not done and not failed:
            return
        await self.store.save(done, failed)
        self.retries.forget([i for i, _ in failed])
        for item_id, reason in failed:
            log.warning("item cannot be embedded", extra={"item_id": item_id, "reason": reason})
