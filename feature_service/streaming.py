"""EmbedStream: the client streams batches, results stream back as they complete, and
gRPC flow control is the backpressure. A stream left idle is closed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from feature_service.budget import RequestBytes
from feature_service.messages import fill_result, image_inputs
from feature_service.pipeline import FeaturePipeline, ImageInput
from feature_service.vector_layout import VectorLayout
from hitl.v1 import feature_pb2


@dataclass(frozen=True)
class StreamLimits:
    max_items: int  # images in one message (FEATURE_MAX_ITEMS)
    inflight: int  # messages worked on at once (FEATURE_STREAM_INFLIGHT)
    idle_s: float  # FEATURE_STREAM_IDLE_S


class StreamIdle(Exception):
    """An EmbedStream sent nothing, with nothing of its own in progress, for too long."""


def _stream_error(error: BaseException | None, idle_s: float) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, StreamIdle):
        return (grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no message for {idle_s:g} s with nothing in progress (FEATURE_STREAM_IDLE_S): "
                "the stream is closed; open another to go on")
    if isinstance(error, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    return grpc.StatusCode.INTERNAL, str(error)


async def serve_stream(pipeline: FeaturePipeline,
                       request_iterator: AsyncIterator[feature_pb2.EmbedStreamRequest],
                       context: grpc.aio.ServicerContext[feature_pb2.EmbedStreamRequest,
                                                         feature_pb2.EmbedStreamResponse],
                       caller: str, limits: StreamLimits, request_bytes: RequestBytes,
                       layout: VectorLayout) -> AsyncIterator[feature_pb2.EmbedStreamResponse]:
    """At most `stream_inflight` messages are worked on at once, and only while the
    request-bytes budget has room: the reader stops pulling from the stream until a
    result has been sent or room is made, so gRPC flow control holds the client back.
    A stream that sends nothing, with nothing in progress, for FEATURE_STREAM_IDLE_S
    is closed."""
    slots = asyncio.Semaphore(limits.inflight)
    done: asyncio.Queue[feature_pb2.EmbedStreamResponse | None] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()
    last_active = [time.monotonic()]

    async def work(images: list[ImageInput], size: int, every_class: bool) -> None:
        try:
            response = feature_pb2.EmbedStreamResponse()
            for result in await pipeline.embed(images, caller=caller):
                fill_result(response.results.add(), result, layout, every_class)
        finally:
            await request_bytes.give(caller, size)
        await done.put(response)

    async def next_message(messages: AsyncIterator[feature_pb2.EmbedStreamRequest]
                           ) -> feature_pb2.EmbedStreamRequest:
        pending = asyncio.ensure_future(messages.__anext__())
        try:
            while True:
                finished, _ = await asyncio.wait({pending}, timeout=limits.idle_s)
                if finished:
                    return pending.result()
                if not tasks and done.empty() and (
                        time.monotonic() - last_active[0] >= limits.idle_s):
                    raise StreamIdle()
        finally:
            pending.cancel()

    async def read() -> None:
        messages = request_iterator.__aiter__()
        while True:
            try:
                message = await next_message(messages)
            except StopAsyncIteration:
                break
            last_active[0] = time.monotonic()
            if len(message.images) > limits.max_items:
                raise ValueError(f"{len(message.images)} images in one stream message; "
                                 f"at most {limits.max_items} (FEATURE_MAX_ITEMS)")
            await slots.acquire()
            size = message.ByteSize()
            await request_bytes.take(caller, size)
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
                await context.abort(*_stream_error(reader.exception(), limits.idle_s))
            response = await getter
            if response is None or context.cancelled():  # done, or the client left
                return
            yield response
            last_active[0] = time.monotonic()
            slots.release()
    finally:
        reader.cancel()
        for task in list(tasks):
            task.cancel()
        with contextlib.suppress(BaseException):
            await reader
