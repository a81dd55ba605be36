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
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeAlias

import grpc
import numpy as np

from hitl.channels import open_channel
from hitl.v1 import feature_pb2, feature_pb2_grpc
from trainer_service.datasets import Catalog, Item
from trainer_service.features.embed_plan import Retries, plan_batch
from trainer_service.features.order import ExtractionOrder
from trainer_service.features.records import (
    Embedded,
    ExtractorRecord,
    ImageError,
    ImageSource,
)
from trainer_service.features.store import FeatureStore
from trainer_service.features.task_evidence import (
    Task,
    extractor_key,
    stored_record,
    task_evidence,
    task_matrix,
)

log = logging.getLogger(__name__)

SERVICE = "hitl.v1.FeatureService"
# The feature service's stub over a grpc.aio channel, for the trainer's parts that call it
# through this module's functions (only this module, the servicer and `convert` import the
# generated stubs). A string: the async stub is a type only.
FeatureStub: TypeAlias = "feature_pb2_grpc.FeatureServiceAsyncStub"
PERMANENT = {feature_pb2.ERROR_KIND_NOT_FOUND, feature_pb2.ERROR_KIND_BAD_IMAGE,
             feature_pb2.ERROR_KIND_TOO_LARGE, feature_pb2.ERROR_KIND_FORBIDDEN_URL,
             feature_pb2.ERROR_KIND_INVALID}
MAX_BACKOFF_S = 10.0
# A whole Embed call failing with these says nothing about the service being away: one of
# the images may be what breaks it, so each try counts against every image in the call.
WHOLE_CALL_FAILURES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def stored_vector(features: feature_pb2.Features, extractor: ExtractorRecord) -> bytes:
    """The embedding and every class's evidence, as the feature service stores them."""
    evidence, vector = features.class_evidence, features.vector
    return vector[:4 * int(extractor["embedding_dimension"])] + evidence if evidence else vector


def image_ref(item: Item) -> feature_pb2.ImageRef:
    """Remote images by URL (the feature service fetches them); local ones as bytes."""
    if item.is_remote:
        return feature_pb2.ImageRef(id=item.id, url=item.location)
    return feature_pb2.ImageRef(id=item.id, data=Path(item.location).read_bytes())


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
        while True:
            try:
                if not self.described:
                    await self._describe()
                await self.order.top_up()
                batch = self.order.next_batch()
                if not batch:
                    self.store.queued.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.store.queued.wait(),
                                               timeout=self.order.idle_s())
                    continue
                await self._extract(batch)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("feature service unavailable; retrying", extra={
                    "code": exc.code().name, "detail": exc.details(), "retry_in_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception:
                log.exception("extraction failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _extract(self, items: list[Item]) -> None:
        budget = self.message_budget
        plan = await asyncio.to_thread(plan_batch, items, budget)
        refs, failed = [], list(plan.failed)
        for item in plan.batch:
            try:
                refs.append(await asyncio.to_thread(image_ref, item))
            except OSError as exc:
                failed.append((item.id, f"unreadable: {exc.strerror or exc}"))
        request = feature_pb2.EmbedRequest(images=refs, include_class_evidence=True)
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
            per_item = (time.perf_counter() - started) / len(request.images)
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

# -- calls for classification and the scoring job (plain records in, plain records out) --


class FeatureServiceError(Exception):
    """A whole call to the feature service failed (it is down, or refused the call)."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


def embedded(result: feature_pb2.EmbedResult, extractor: ExtractorRecord) -> Embedded:
    """The task's vector and evidence (its detector class's), and the stored vector."""
    if result.WhichOneof("outcome") == "features":
        stored = np.frombuffer(stored_vector(result.features, extractor), dtype="<f4")
        if len(stored) != int(extractor["stored_dimension"]):
            return Embedded(result.id, None, error=ImageError(
                "INTERNAL", "feature vector of the wrong length", False))
        vector = task_matrix(extractor, stored)[0]
        return Embedded(result.id, vector,
                        task_evidence(vector[int(extractor["embedding_dimension"]):]), stored)
    kind = feature_pb2.ErrorKind.Name(result.error.kind).removeprefix("ERROR_KIND_")
    return Embedded(result.id, None, error=ImageError(kind, result.error.message,
                                                      result.error.retryable))


async def describe(stub: FeatureStub, task: Task) -> ExtractorRecord:
    try:
        response = await stub.Describe(feature_pb2.DescribeRequest(), timeout=10)
    except grpc.aio.AioRpcError as exc:
        raise FeatureServiceError(exc.code().name, exc.details() or "") from None
    return extractor_key(response.extractor, task)


async def embed_images(stub: FeatureStub, images: list[ImageSource],
                       deadline_s: float, task: Task) -> tuple[ExtractorRecord, list[Embedded]]:
    """(the extractor, one result per image in order). New images go without an id, so
    the feature service keys them by content and never mixes them up with dataset items."""
    refs = [feature_pb2.ImageRef(url=i.url) if i.url else feature_pb2.ImageRef(data=i.data)
            for i in images]
    try:
        response = await stub.Embed(feature_pb2.EmbedRequest(
            images=refs, include_class_evidence=True), timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        raise FeatureServiceError(exc.code().name, exc.details() or "") from None
    extractor = extractor_key(response.extractor, task)
    return extractor, [embedded(r, extractor) for r in response.results]


async def embed_stream(stub: FeatureStub, items: list[Item],
                       batch: int, deadline_s: float, extractor: ExtractorRecord,
                       unreadable: list[tuple[str, str]]) -> AsyncIterator[list[Embedded]]:
    """Embeds `items` through one EmbedStream, `batch` per message, yielding results as
    they come (in any order). Local files are read only as the stream asks for more, so
    memory stays bounded; those that cannot be read are appended to `unreadable`."""

    async def requests() -> AsyncIterator[feature_pb2.EmbedStreamRequest]:
        for start in range(0, len(items), batch):
            refs = []
            for item in items[start:start + batch]:
                try:
                    refs.append(await asyncio.to_thread(image_ref, item))
                except OSError as exc:
                    unreadable.append((item.id, f"unreadable: {exc.strerror or exc}"))
            if refs:
                yield feature_pb2.EmbedStreamRequest(images=refs, include_class_evidence=True)

    call = stub.EmbedStream(requests(), timeout=deadline_s)
    try:
        async for response in call:
            yield [embedded(r, extractor) for r in response.results]
    except grpc.aio.AioRpcError as exc:
        raise FeatureServiceError(exc.code().name, exc.details() or "") from None
    finally:
        call.cancel()
