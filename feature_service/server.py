"""The gRPC face of the feature service: request messages in, pipeline results out."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

import grpc

from feature_service import metrics
from feature_service.budget import OpenCalls, RequestBytes
from feature_service.cache import check_writable
from feature_service.config import Config
from feature_service.extractors.base import Extractor
from feature_service.jobs import Builder
from feature_service.messages import compute_settings, extractor_info, fill_result, image_inputs
from feature_service.startup import Ready, configured_builder, start
from feature_service.streaming import StreamLimits, serve_stream
from feature_service.workers import Workers
from hitl.auth import ANONYMOUS
from hitl.grpc_server import GrpcService
from hitl.logs import caller_name
from hitl.rpc_types import AnyContext
from hitl.security import server_options
from hitl.v1 import feature_pb2, feature_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = feature_pb2.DESCRIPTOR.services_by_name["FeatureService"].full_name


def _caller() -> str:
    """The authenticated caller (hitl.interceptors), whose names for images these are."""
    return caller_name.get() or ANONYMOUS


class FeatureServicer(feature_pb2_grpc.FeatureServiceServicer):
    """Serves once `ready` is set by the warm-up (feature_service/startup.py); health
    says NOT_SERVING until then."""

    def __init__(self, config: Config) -> None:
        self.max_items, self.max_message_bytes = config.max_items, config.max_message_bytes
        self.stream_limits = StreamLimits(config.max_items, config.stream_inflight,
                                          config.stream_idle_s)
        self.request_bytes = RequestBytes(config.max_inflight_bytes, config.caller_bytes)
        self.calls = OpenCalls(config.max_concurrent_rpcs, config.caller_calls)
        self.ready: Ready | None = None
        self.info = feature_pb2.ExtractorInfo()
        self.settings = feature_pb2.ComputeSettings()

    def serve(self, ready: Ready) -> None:
        self.ready = ready
        self.info = extractor_info(ready.info)
        self.settings = compute_settings(ready.calibration)

    @contextlib.asynccontextmanager
    async def _call(self, context: AnyContext) -> AsyncIterator[Ready]:
        """A data-plane call: counted against the bounds on open calls (in all and for
        its caller), answered UNAVAILABLE while the service warms up."""
        if self.ready is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the service is warming up")
        assert self.ready is not None
        caller = _caller()
        refusal = self.calls.enter(caller)
        if refusal is not None:
            metrics.REFUSED_CALLS.inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        try:
            yield self.ready
        finally:
            self.calls.leave(caller)

    @contextlib.asynccontextmanager
    async def _admitted(self, size: int, context: AnyContext
                        ) -> AsyncIterator[None]:
        """Refuses, rather than queues, an Embed whose body would pass the budget (its
        caller's, or the whole service's): its body is in memory already, and waiting
        would keep it there."""
        caller = _caller()
        refusal = self.request_bytes.try_take(caller, size)
        if refusal is not None:
            metrics.REFUSED_CALLS.inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        try:
            yield
        finally:
            await self.request_bytes.give(caller, size)

    async def _check_count(self, count: int, context: AnyContext) -> None:
        if count > self.max_items:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{count} images in one message; at most {self.max_items} "
                                "(FEATURE_MAX_ITEMS): split the request or use EmbedStream")

    async def Describe(
            self, request: feature_pb2.DescribeRequest,
            context: grpc.aio.ServicerContext[feature_pb2.DescribeRequest,
                                              feature_pb2.DescribeResponse],
    ) -> feature_pb2.DescribeResponse:
        if self.ready is None:  # the extractor and its settings are chosen by the warm-up
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the service is warming up")
        return feature_pb2.DescribeResponse(extractor=self.info,
                                            max_message_bytes=self.max_message_bytes,
                                            settings=self.settings)

    async def Embed(
            self, request: feature_pb2.EmbedRequest,
            context: grpc.aio.ServicerContext[feature_pb2.EmbedRequest, feature_pb2.EmbedResponse],
    ) -> feature_pb2.EmbedResponse:
        async with self._call(context) as ready:
            await self._check_count(len(request.images), context)
            async with self._admitted(request.ByteSize(), context):
                results = await ready.pipeline.embed(image_inputs(request.images),
                                                     request.bypass_cache, _caller())
        response = feature_pb2.EmbedResponse(extractor=self.info)
        for result in results:
            fill_result(response.results.add(), result, ready.layout,
                        request.include_class_evidence)
        return response

    async def Lookup(
            self, request: feature_pb2.LookupRequest,
            context: grpc.aio.ServicerContext[feature_pb2.LookupRequest,
                                              feature_pb2.LookupResponse],
    ) -> feature_pb2.LookupResponse:
        async with self._call(context) as ready:
            await self._check_count(len(request.ids), context)
            response = feature_pb2.LookupResponse()
            for result in ready.pipeline.lookup(list(request.ids), _caller()):
                fill_result(response.results.add(), result, ready.layout,
                            request.include_class_evidence)
        return response

    async def EmbedStream(
            self, request_iterator: AsyncIterator[feature_pb2.EmbedStreamRequest],
            context: grpc.aio.ServicerContext[feature_pb2.EmbedStreamRequest,
                                              feature_pb2.EmbedStreamResponse],
    ) -> AsyncIterator[feature_pb2.EmbedStreamResponse]:
        async with self._call(context) as ready:
            async for response in serve_stream(ready.pipeline, request_iterator, context,
                                               _caller(), self.stream_limits,
                                               self.request_bytes, ready.layout):
                yield response


def build_service(config: Config, extractor: Extractor | None = None,
                  builder: Builder | None = None) -> GrpcService:
    """The feature service, ready to start. By default each worker process builds the
    configured extractor (MissingWeightsError here when its weights are absent);
    `builder` builds another (the benchmark's random weights), and `extractor`, an
    object, runs on threads of this process (tests)."""
    check_writable(config.cache_dir)
    if extractor is None and builder is None:
        builder = configured_builder(config)
    servicer = FeatureServicer(config)
    held: dict[str, Ready | Workers] = {}

    async def warm_up() -> None:
        ready, workers = await start(config, builder, extractor)
        held["ready"], held["workers"] = ready, workers
        servicer.serve(ready)

    async def close() -> None:
        ready = held.get("ready")
        if isinstance(ready, Ready):
            await ready.pipeline.close()
            ready.cache.close()
        else:
            workers = held.get("workers")
            if workers is not None:
                await workers.close()  # type: ignore[union-attr]

    # Health, Describe and reflection answer outside the data plane's bounds on calls
    # (FeatureServicer._call): gRPC's own limit would refuse them with the rest.
    options = dataclasses.replace(server_options(config, "FEATURE"), max_concurrent_rpcs=0)
    service = GrpcService(
        name="feature", service_names=[SERVICE_NAME], port=config.port, grace_s=config.grace_s,
        max_message_bytes=config.max_message_bytes,
        add_servicers=lambda server: feature_pb2_grpc.add_FeatureServiceServicer_to_server(
            servicer, server),
        warm_up=warm_up, close=close, metrics_port=config.metrics_port, options=options)
    service.servicer = servicer  # type: ignore[attr-defined]
    return service
