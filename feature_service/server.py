"""The gRPC face of the feature service: request messages in, pipeline results out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc

from feature_service import content, metrics
from feature_service.batching import MicroBatcher
from feature_service.budget import RequestBytes
from feature_service.cache import FeatureCache
from feature_service.config import Config
from feature_service.extractors.base import Extractor
from feature_service.fetch import Fetcher, FetchLimits
from feature_service.outcomes import Kind
from feature_service.pipeline import FeaturePipeline, ImageInput, Result
from feature_service.vector_layout import VectorLayout, describe
from hitl.addresses import Allowlist
from hitl.auth import ANONYMOUS
from hitl.evidence import EVIDENCE_VERSION
from hitl.grpc_server import GrpcService
from hitl.logs import caller_name
from hitl.security import server_options
from hitl.v1 import feature_pb2, feature_pb2_grpc

log = logging.getLogger(__name__)

_ERROR_KINDS = {kind: getattr(feature_pb2, "ERROR_KIND_" + kind.name) for kind in Kind}
SERVICE_NAME = feature_pb2.DESCRIPTOR.services_by_name["FeatureService"].full_name


def load_configured_extractor(config: Config) -> Extractor:
    """The configured extractor; raises MissingWeightsError when its files are absent and
    ValueError when the device is unusable (cuda without a GPU)."""
    from feature_service.extractors import load_extractor
    return load_extractor(config.extractor, Path(config.models_dir), config.device,
                          config.precision)


def extractor_info(extractor: Extractor) -> feature_pb2.ExtractorInfo:
    return describe(extractor.info)


def fill_result(message: feature_pb2.EmbedResult, result: Result, layout: VectorLayout,
                every_class: bool = False) -> None:
    """Writes `result` into `message` in place (`results.add()`): building submessages
    separately and copying them in costs several times more on large responses.
    `every_class` adds every detector class's evidence."""
    message.id = result.key
    if result.failure is not None:
        failure = result.failure
        error = message.error
        error.kind = _ERROR_KINDS[failure.kind]
        error.message = failure.message
        error.retryable = failure.retryable
        return
    assert result.vector is not None
    features = message.features
    layout.fill(features, result.vector, every_class)
    features.cached = result.cached


def image_inputs(images: Sequence[feature_pb2.ImageRef]) -> list[ImageInput]:
    inputs = []
    for image in images:
        source = image.WhichOneof("source")
        inputs.append(ImageInput(id=image.id,
                                 url=image.url if source == "url" else None,
                                 data=image.data if source == "data" else None))
    return inputs


def _caller() -> str:
    """The authenticated caller (hitl.interceptors), whose names for images these are."""
    return caller_name.get() or ANONYMOUS


class FeatureServicer(feature_pb2_grpc.FeatureServiceServicer):
    def __init__(self, pipeline: FeaturePipeline, max_items: int, stream_inflight: int,
                 request_bytes: RequestBytes, max_message_bytes: int = 0) -> None:
        self.pipeline, self.max_items, self.stream_inflight = (
            pipeline, max_items, stream_inflight)
        self.max_message_bytes = max_message_bytes
        self.request_bytes = request_bytes
        self.info = extractor_info(pipeline.extractor)
        self.layout = VectorLayout(pipeline.extractor.info)

    @contextlib.asynccontextmanager
    async def _admitted(self, size: int, context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[None]:
        """Refuses, rather than queues, an Embed whose body would pass the budget: its
        body is in memory already, and waiting would keep it there. Describe, Lookup and
        health are never refused."""
        budget = self.request_bytes
        if not budget.try_take(size):
            metrics.REFUSED_CALLS.inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{budget.used} bytes of requests in progress; {size} more "
                                f"would pass {budget.limit} (FEATURE_MAX_INFLIGHT_BYTES): "
                                "retry with backoff")
        try:
            yield
        finally:
            await budget.give(size)

    async def _check_count(self, count: int, context: grpc.aio.ServicerContext) -> None:
        if count > self.max_items:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{count} images in one message; at most {self.max_items} "
                                "(FEATURE_MAX_ITEMS): split the request or use EmbedStream")

    async def Describe(self, request, context):  # type: ignore[no-untyped-def]
        return feature_pb2.DescribeResponse(extractor=self.info,
                                            max_message_bytes=self.max_message_bytes)

    async def Embed(self, request, context):  # type: ignore[no-untyped-def]
        await self._check_count(len(request.images), context)
        async with self._admitted(request.ByteSize(), context):
            results = await self.pipeline.embed(image_inputs(request.images),
                                                request.bypass_cache, _caller())
        response = feature_pb2.EmbedResponse(extractor=self.info)
        for result in results:
            fill_result(response.results.add(), result, self.layout,
                        request.include_class_evidence)
        return response

    async def Lookup(self, request, context):  # type: ignore[no-untyped-def]
        await self._check_count(len(request.ids), context)
        response = feature_pb2.LookupResponse()
        for result in self.pipeline.lookup(list(request.ids), _caller()):
            fill_result(response.results.add(), result, self.layout,
                        request.include_class_evidence)
        return response

    async def EmbedStream(self, request_iterator, context):  # type: ignore[no-untyped-def]
        """At most `stream_inflight` messages are worked on at once, and only while the
        request-bytes budget has room: the reader stops pulling from the stream until a
        result has been sent or room is made, so gRPC flow control holds the client back."""
        caller = _caller()
        slots = asyncio.Semaphore(self.stream_inflight)
        done: asyncio.Queue[feature_pb2.EmbedStreamResponse | None] = asyncio.Queue()
        tasks: set[asyncio.Task] = set()

        async def work(images: list[ImageInput], size: int, every_class: bool) -> None:
            try:
                response = feature_pb2.EmbedStreamResponse()
                for result in await self.pipeline.embed(images, caller=caller):
                    fill_result(response.results.add(), result, self.layout, every_class)
            finally:
                await self.request_bytes.give(size)
            await done.put(response)

        async def read() -> None:
            async for message in request_iterator:
                if len(message.images) > self.max_items:
                    raise ValueError(f"{len(message.images)} images in one stream message; "
                                     f"at most {self.max_items} (FEATURE_MAX_ITEMS)")
                await slots.acquire()
                size = message.ByteSize()
                await self.request_bytes.take(size)
                task = asyncio.create_task(work(image_inputs(message.images), size,
                                                message.include_class_evidence))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*list(tasks))
            await done.put(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                getter = asyncio.ensure_future(done.get())
                if not reader.done():
                    await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done() and not reader.cancelled() and reader.exception() is not None:
                    getter.cancel()
                    error = reader.exception()
                    code = (grpc.StatusCode.INVALID_ARGUMENT if isinstance(error, ValueError)
                            else grpc.StatusCode.INTERNAL)
                    await context.abort(code, str(error))
                response = await getter
                if response is None or context.cancelled():  # done, or the client left
                    return
                yield response
                slots.release()
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()
            with contextlib.suppress(BaseException):
                await reader


def build_service(config: Config, extractor: Extractor | None = None) -> GrpcService:
    """The feature service, ready to start. `extractor` defaults to the configured one
    (raising MissingWeightsError when its weights are absent)."""
    extractor = extractor or load_configured_extractor(config)
    info = extractor.info
    # The stored layout (every class's evidence) is part of the namespace: entries of an
    # earlier layout are never read as this one.
    cache = FeatureCache(config.cache_dir,
                         f"{info.name}/{info.version}/{EVIDENCE_VERSION}/{content.LAYOUT}",
                         config.cache_map_bytes, config.cache_max_bytes)
    fetcher = Fetcher(Allowlist.from_entries(config.url_allowlist), FetchLimits(
        max_bytes=config.max_image_bytes, connect_timeout_s=config.connect_timeout_s,
        total_timeout_s=config.read_timeout_s, max_redirects=config.max_redirects,
        max_concurrent=config.fetch_concurrency))
    batcher = MicroBatcher(extractor, config.batch_limit(info.name, info.device),
                           config.max_wait_ms / 1000)
    pipeline = FeaturePipeline(extractor, cache, fetcher, batcher,
                               decode_threads=config.decode_threads,
                               max_image_bytes=config.max_image_bytes,
                               max_pixels=config.max_pixels)
    servicer = FeatureServicer(pipeline, config.max_items, config.stream_inflight,
                               RequestBytes(config.max_inflight_bytes),
                               config.max_message_bytes)

    async def close() -> None:
        await batcher.close()
        await pipeline.close()
        cache.close()

    service = GrpcService(
        name="feature", service_names=[SERVICE_NAME], port=config.port, grace_s=config.grace_s,
        max_message_bytes=config.max_message_bytes,
        add_servicers=lambda server: feature_pb2_grpc.add_FeatureServiceServicer_to_server(
            servicer, server),
        warm_up=batcher.start, close=close, metrics_port=config.metrics_port,
        options=server_options(config, "FEATURE"))
    service.pipeline = pipeline  # type: ignore[attr-defined]
    log.info("extractor", extra={"extractor": info.name, "version": info.version,
                                 "dimension": info.dimension, "device": info.device,
                                 "max_batch": batcher.max_batch})
    return service

