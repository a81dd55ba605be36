"""The feature service's calls for classification and the scoring job, plain records in
and plain records out (the background extraction worker is `extraction.py`), and the
two conversions both use: an item to the image it sends, a result to the vector stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import grpc
import numpy as np

from hitl.v1 import feature_pb2, feature_pb2_grpc
from trainer_service.datasets import Item
from trainer_service.features.records import (
    Embedded,
    ExtractorRecord,
    ImageError,
    ImageSource,
)
from trainer_service.features.task_evidence import (
    Task,
    extractor_key,
    task_evidence,
    task_matrix,
)

if TYPE_CHECKING:
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

# The feature service's stub over a grpc.aio channel, for the trainer's parts that call it
# through this module's functions (only this module, `extraction`, the servicer and
# `convert` import the generated stubs). A string: the async stub is a type only.
FeatureStub: TypeAlias = "feature_pb2_grpc.FeatureServiceAsyncStub"


def stored_vector(features: feature_pb2.Features, extractor: ExtractorRecord) -> bytes:
    """The embedding and every class's evidence, as the feature service stores them."""
    evidence, vector = features.class_evidence, features.vector
    return vector[:4 * int(extractor["embedding_dimension"])] + evidence if evidence else vector


def add_image(images: RepeatedCompositeFieldContainer[feature_pb2.ImageRef],
              item: Item) -> None:
    """Appends `item` to a request's images: a remote image by URL (the feature service
    fetches it), a local one as its file's bytes, copied once into the message (an
    ImageRef appended to a request would be copied again whole). A file that cannot be
    read raises OSError and adds nothing. Called in a thread: it reads the file."""
    if item.is_remote:
        images.add(id=item.id, url=item.location)
    else:
        images.add(id=item.id, data=Path(item.location).read_bytes())


class FeatureServiceError(Exception):
    """A whole call to the feature service failed (it is down, or refused the call)."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


def embedded(result: feature_pb2.EmbedResult, extractor: ExtractorRecord) -> Embedded:
    """The task's vector and evidence (its detector class's), and the stored vector."""
    if result.WhichOneof("outcome") == "features":
        raw = stored_vector(result.features, extractor)
        if len(raw) != 4 * int(extractor["stored_dimension"]):
            return Embedded(result.id, None, error=ImageError(
                "INTERNAL", "feature vector of the wrong length", False))
        stored = np.frombuffer(raw, dtype="<f4")
        vector = task_matrix(extractor, stored)[0]
        return Embedded(result.id, vector,
                        task_evidence(vector[int(extractor["embedding_dimension"]):]), stored)
    known = result.error.kind in feature_pb2.ErrorKind.values()  # a forwarded answer's too
    kind = (feature_pb2.ErrorKind.Name(result.error.kind).removeprefix("ERROR_KIND_")
            if known else "INTERNAL")
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
    # Each image's bytes are copied once, into the message sent (ImageRefs passed to
    # EmbedRequest(images=...) would be copied again whole, on the event loop).
    request = feature_pb2.EmbedRequest(include_class_evidence=True)
    for i in images:
        if i.url:
            request.images.add(url=i.url)
        else:
            request.images.add(data=i.data)
    try:
        response = await stub.Embed(request, timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        raise FeatureServiceError(exc.code().name, exc.details() or "") from None
    return embed_results(response, task)


def embed_results(response: feature_pb2.EmbedResponse, task: Task
                  ) -> tuple[ExtractorRecord, list[Embedded]]:
    """(the extractor, one result per image in order) of an Embed's answer: one the
    trainer asked for, or one a client forwards to classify (ClassifyRequest.embedded)."""
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
            request = feature_pb2.EmbedStreamRequest(include_class_evidence=True)
            for item in items[start:start + batch]:
                try:
                    await asyncio.to_thread(add_image, request.images, item)
                except OSError as exc:
                    unreadable.append((item.id, f"unreadable: {exc.strerror or exc}"))
            if request.images:
                yield request

    call = stub.EmbedStream(requests(), timeout=deadline_s)
    try:
        async for response in call:
            yield [embedded(r, extractor) for r in response.results]
    except grpc.aio.AioRpcError as exc:
        raise FeatureServiceError(exc.code().name, exc.details() or "") from None
    finally:
        call.cancel()
