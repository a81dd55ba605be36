"""Every caller of the feature service gets its share: one caller's streams, bytes or
large images cannot starve another caller, health and Describe answer whatever the
callers do, and a stream left idle is closed. Real gRPC on real ports, a real LMDB
cache, real PNG images; TinyExtractor stands in for the models."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from feature_service.server import SERVICE_NAME
from hitl.channels import ClientSecurity, open_channel
from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.feature.conftest import ImageServer, Running
from tests.feature.helpers import TinyExtractor, encode, gradient, solid
from tests.feature.test_callers import TOKENS
from tests.feature.test_service import OK, by_data, by_url, outcome

E = feature_pb2
Stubs = dict[str, feature_pb2_grpc.FeatureServiceStub]
LARGE_SIDE = 1500  # a "large" image here: 2.25 megapixels


class Recording(TinyExtractor):
    """Records the order in which images are prepared (by width), and takes a while over
    large ones, as a real decoder and resizer do."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[int] = []
        self._order_lock = threading.Lock()

    def prepare(self, image):  # type: ignore[no-untyped-def]
        with self._order_lock:
            self.order.append(image.width)
        if image.width >= LARGE_SIDE:
            threading.Event().wait(0.25)
        return super().prepare(image)


async def _stubs(running: Running) -> tuple[Stubs, list[grpc.aio.Channel]]:
    channels = [open_channel(f"127.0.0.1:{running.service.port}", SERVICE_NAME,
                             security=ClientSecurity(token=token)) for token in TOKENS.values()]
    return ({name: feature_pb2_grpc.FeatureServiceStub(c)
             for name, c in zip(TOKENS, channels, strict=True)}, channels)


async def _health(running: Running) -> int:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.service.port}")
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
        return int(reply.status)
    finally:
        await channel.close()


def _held(release: asyncio.Event, seed: int) -> AsyncIterator[feature_pb2.EmbedStreamRequest]:
    async def messages() -> AsyncIterator[feature_pb2.EmbedStreamRequest]:
        yield E.EmbedStreamRequest(images=[by_data(encode(gradient(seed=seed), "PNG"))])
        await release.wait()  # open, and counted, until released
    return messages()


async def test_one_caller_holding_streams_leaves_health_describe_and_others_served(
        service_factory) -> None:  # type: ignore[no-untyped-def]
    """Issue 21: with one valid token, idle EmbedStreams took every call slot, and the
    health check and Describe were refused with RESOURCE_EXHAUSTED."""
    running = await service_factory(TinyExtractor(), caller_tokens=tuple(TOKENS.items()),
                                    max_concurrent_rpcs=8)
    stubs, channels = await _stubs(running)
    release = asyncio.Event()
    held, refused = [], None
    try:
        for i in range(9):
            call = stubs["team-a"].EmbedStream(_held(release, seed=900 + i), timeout=30)
            try:
                await call.read()
            except grpc.aio.AioRpcError as exc:
                refused = exc
                break
            held.append(call)
        assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(held) < 8, "one caller took every call slot"
        assert "team-a" not in (refused.details() or "") or "FEATURE_" in (refused.details() or "")
        assert await _health(running) == health_pb2.HealthCheckResponse.SERVING
        assert (await stubs["team-b"].Describe(E.DescribeRequest(), timeout=5)).extractor.name
        assert (await stubs["team-a"].Describe(E.DescribeRequest(), timeout=5)).extractor.name
        reply = await stubs["team-b"].Embed(E.EmbedRequest(images=[
            by_data(encode(gradient(seed=950), "PNG"))]), timeout=10)
        assert outcome(reply.results[0]) == OK
    finally:
        release.set()
        for call in held:
            call.cancel()
        for channel in channels:
            await channel.close()


async def test_an_idle_stream_is_closed_after_the_configured_time(service_factory) -> None:  # type: ignore[no-untyped-def]
    """Issue 21: streams had no idle timeout, so an idle one held its slot forever."""
    # Ten times the steady sender's pause below: client and server share this event
    # loop, and a loaded machine can stall it for a good part of a second.
    running = await service_factory(TinyExtractor(), stream_idle_s=2.0)
    never = asyncio.Event()
    call = running.stub.EmbedStream(_held(never, seed=960), timeout=30)
    assert outcome((await call.read()).results[0]) == OK
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        await asyncio.wait_for(call.read(), timeout=10)
    assert closed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "FEATURE_STREAM_IDLE_S" in (closed.value.details() or "")
    # A stream that keeps sending is not idle, however long it lasts.
    async def steady() -> AsyncIterator[feature_pb2.EmbedStreamRequest]:
        for i in range(6):
            yield E.EmbedStreamRequest(images=[by_data(encode(gradient(seed=970 + i), "PNG"))])
            await asyncio.sleep(0.2)
    replies = [r async for r in running.stub.EmbedStream(steady(), timeout=30)]
    assert [outcome(r.results[0]) for r in replies] == [OK] * 6


async def test_a_small_image_is_not_queued_behind_another_callers_large_ones(
        service_factory) -> None:  # type: ignore[no-untyped-def]
    """Issue 21: one caller's large images made another caller's small tile wait for all
    of them (two shared decoding threads, first come first served)."""
    extractor = Recording()
    running = await service_factory(extractor, caller_tokens=tuple(TOKENS.items()),
                                    max_pixels=4_000_000, max_image_bytes=4 << 20)
    stubs, channels = await _stubs(running)
    try:
        large = [by_data(encode(solid((i, 40, 90), (LARGE_SIDE, LARGE_SIDE)), "PNG"))
                 for i in range(8)]
        flood = asyncio.ensure_future(stubs["team-a"].Embed(E.EmbedRequest(images=large),
                                                            timeout=60))
        while not extractor.order:  # team-a's images are being decoded
            await asyncio.sleep(0.005)
        tile = by_data(encode(gradient((120, 120), seed=980), "PNG"))
        reply = await stubs["team-b"].Embed(E.EmbedRequest(images=[tile]), timeout=60)
        assert outcome(reply.results[0]) == OK
        assert not flood.done(), "the small tile waited for the whole flood"
        position = extractor.order.index(120)
        before = sum(1 for width in extractor.order[:position] if width >= LARGE_SIDE)
        assert before <= 3, f"the tile was decoded after {before} large images"
        assert [outcome(r) for r in (await flood).results] == [OK] * 8
    finally:
        for channel in channels:
            await channel.close()


async def test_one_caller_cannot_take_the_whole_byte_budget(
        service_factory, image_server: ImageServer) -> None:  # type: ignore[no-untyped-def]
    """Issue 21: the bytes in progress had one shared bound, so one caller's requests
    could fill it and every other caller was refused."""
    running = await service_factory(TinyExtractor(), caller_tokens=tuple(TOKENS.items()),
                                    max_inflight_bytes=1 << 20)
    stubs, channels = await _stubs(running)
    try:
        def held_request(i: int) -> feature_pb2.EmbedRequest:
            return E.EmbedRequest(images=[by_url(image_server.url("/slow")),
                                          by_data(b"\0" * (180 << 10), id=f"ballast-{i}")])

        flood = [asyncio.ensure_future(stubs["team-a"].Embed(held_request(i), timeout=30))
                 for i in range(5)]
        while image_server.hits.get("/slow", 0) < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # every one of team-a's calls has arrived
        small = by_data(encode(gradient(seed=990), "PNG") + b"\0" * (180 << 10))
        reply = await stubs["team-b"].Embed(E.EmbedRequest(images=[small]), timeout=10)
        assert outcome(reply.results[0]) == OK
        codes = []
        for call in flood:
            try:
                await call
                codes.append("OK")
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code().name)
        assert "RESOURCE_EXHAUSTED" in codes and "OK" in codes, codes
    finally:
        for channel in channels:
            await channel.close()
