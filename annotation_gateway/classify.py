"""POST /api/classify: new images, as JSON `{"urls": [...]}` or as a multipart upload of
parts named `image`, classified by the model in use. Every image gets its own result or
error, in request order; a bad image never costs the others their answers.

An upload is forwarded as it is read: parts go to the feature service in calls of a few
MiB while the next parts are read, so a request never holds all its images at once, and
the process's byte budget (`uploads`) bounds what all requests hold together. The trainer
gets each call's vectors (ClassifyRequest.embedded), not its images: a megabyte costs a
gRPC server in Python a few ms of its event loop to receive, and the trainer's loop is
the one every annotator's next image waits on. An oversized request is refused (413)
after at most the limit has been read. Each annotator has a rate (GATEWAY_CLASSIFY_RATE)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from annotation_gateway.errors import ApiError, rpc_api_error
from annotation_gateway.handlers import CONFIG, FEATURES, TRAINER, task_of
from annotation_gateway.ratelimit import RateLimit, caller_key
from annotation_gateway.uploads import UPLOADS, Held, unread
from hitl.redact import without_addresses
from hitl.v1 import common_pb2, feature_pb2, trainer_pb2

# What aiohttp raises for a malformed multipart body (bad boundary, headers or encoding).
MALFORMED = (ValueError, AssertionError, HttpProcessingError)
MAX_JSON_BYTES = 64 * 1024
MAX_URL_CHARS = 2048
MAX_NAME_CHARS = 256
# Parts are sent on once a call holds this many bytes; two calls of a request are in
# flight at most while it reads on.
CALL_BYTES = 4 << 20
# The multipart framing around the parts (boundaries, part headers), on top of their bytes.
MULTIPART_SLACK = 64 * 1024
CALLS_IN_FLIGHT = 2
FORBIDDEN = "forbidden_url: the URL's host is not a public address"
DECISIONS = {common_pb2.LABEL_POSITIVE: "positive", common_pb2.LABEL_NEGATIVE: "negative"}
CLASSIFY_RATE = web.AppKey("classify_rate", RateLimit)
# A call to the feature service, filled part by part: each image's bytes are copied once,
# into the message that is sent (a list of ImageRefs passed to EmbedRequest(images=...)
# would be copied again whole, on the event loop, and held twice against a budget counting
# once). Images go without an id: the feature service keys new images by their content.
Call = feature_pb2.EmbedRequest


def _call_from_json(body: bytes, max_images: int) -> tuple[list[str], Call]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    urls = data.get("urls") if isinstance(data, dict) else None
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ApiError(400, "invalid_urls", 'send {"urls": ["https://...", ...]}: a '
                                            "non-empty list of URLs")
    if len(urls) > max_images:
        raise ApiError(400, "too_many_images", f"at most {max_images} images per request")
    if any(len(u) > MAX_URL_CHARS for u in urls):
        raise ApiError(400, "invalid_urls", f"URLs are at most {MAX_URL_CHARS} characters")
    return list(urls), Call(images=[feature_pb2.ImageRef(url=u) for u in urls],
                            include_class_evidence=True)


async def _calls(request: web.Request, held: Held, names: list[str], max_images: int,
                 max_bytes: int) -> AsyncIterator[tuple[Call, int]]:
    """The upload's parts, read one after the other, gathered into calls of about
    CALL_BYTES: (the call, bytes its images hold of the budget)."""
    try:
        reader = await request.multipart()
    except MALFORMED:
        raise ApiError(400, "invalid_multipart", "the multipart body cannot be read") from None
    call = Call(include_class_evidence=True)
    size = total = 0
    while True:
        try:
            part = await reader.next()
        except MALFORMED:
            raise ApiError(400, "invalid_multipart",
                           "the multipart body cannot be read") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or part.name != "image":
            raise ApiError(400, "unexpected_part", "send each image as a part named image")
        if len(names) >= max_images:
            raise ApiError(400, "too_many_images", f"at most {max_images} images per request")
        try:
            data = await held.read(part.read_chunk, max_bytes - total)
        except MALFORMED:
            raise ApiError(400, "invalid_multipart",
                           "the multipart body cannot be read") from None
        total += len(data)
        names.append((part.filename or f"image {len(names) + 1}")[:MAX_NAME_CHARS])
        # An empty part is sent without a source: the feature service answers it INVALID
        # (an image given as neither bytes nor URL), not as bytes that fail to decode.
        if data:
            call.images.add(data=data)
        else:
            call.images.add()
        size += len(data)
        del data  # the message holds the only copy now
        if size >= CALL_BYTES:
            yield call, size
            call, size = Call(include_class_evidence=True), 0
    if call.images:
        yield call, size
    if not names:
        raise ApiError(400, "no_images", "send at least one part named image")


def _result(name: str, r: trainer_pb2.ClassifyResult) -> dict[str, Any]:
    if r.WhichOneof("outcome") != "classification":
        kind = feature_pb2.ErrorKind.Name(r.error.kind) if r.HasField("error") else "INTERNAL"
        message = without_addresses(r.error.message or "no answer for this image")
        if r.error.kind == feature_pb2.ERROR_KIND_FORBIDDEN_URL:
            message = FORBIDDEN  # never what the URL's host resolved to
        return {"name": name, "error": {
            "code": kind.removeprefix("ERROR_KIND_").lower(), "message": message,
            "retryable": r.error.retryable}}
    c = r.classification
    e = c.evidence
    box = ({"x1": e.box.x1, "y1": e.box.y1, "x2": e.box.x2, "y2": e.box.y2}
           if e.HasField("box") else None)
    return {"name": name, "probability": c.probability,
            "decision": DECISIONS.get(c.decision, "negative"), "model_version": c.model_version,
            "evidence": {"score": e.score, "box": box, "count": e.count}}


def _deadline(request: web.Request) -> float:
    return asyncio.get_running_loop().time() + request.app[CONFIG].classify_deadline_s


def _left(deadline: float) -> float:
    return max(deadline - asyncio.get_running_loop().time(), 0.001)


async def _classified(request: web.Request, call: Call, deadline: float
                      ) -> trainer_pb2.ClassifyResponse:
    """`call`'s images embedded by the feature service, then classified by the trainer
    from their vectors, both within the request's deadline. The call's bytes are dropped
    as soon as the feature service has answered (or failed)."""
    try:
        embedded = await request.app[FEATURES].Embed(call, timeout=_left(deadline))
    except grpc.aio.AioRpcError as exc:
        raise rpc_api_error(exc, "feature") from None
    finally:
        call.Clear()
    return await request.app[TRAINER].Classify(
        trainer_pb2.ClassifyRequest(task=task_of(request), embedded=embedded),
        timeout=_left(deadline))


async def _forward(request: web.Request, held: Held, names: list[str]
                   ) -> list[trainer_pb2.ClassifyResponse]:
    """Sends the upload's calls as they fill, at most CALLS_IN_FLIGHT at once; each call's
    bytes go back to the budget when its answer is in."""
    config = request.app[CONFIG]
    deadline = _deadline(request)

    async def send(call: Call, size: int) -> trainer_pb2.ClassifyResponse:
        try:
            return await _classified(request, call, deadline)
        finally:
            await held.release(size)

    pending: list[asyncio.Task[trainer_pb2.ClassifyResponse]] = []
    try:
        async for call, size in _calls(request, held, names, config.classify_max_images,
                                       config.classify_max_bytes):
            if len(pending) >= CALLS_IN_FLIGHT:
                await asyncio.wait(pending[:1])
            pending.append(asyncio.create_task(send(call, size)))
        return list(await asyncio.gather(*pending))
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _over_rate(request: web.Request) -> None:
    """429 for an annotator past their rate, without reading their upload."""
    try:
        request.app[CLASSIFY_RATE].hit(caller_key(request))
    except ApiError as exc:
        raise unread(request, exc) from None


async def classify(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    _over_rate(request)
    if request.content_type not in ("application/json", "multipart/form-data"):
        raise ApiError(415, "unsupported_media_type",
                       "send application/json with urls, or multipart/form-data with "
                       "parts named image")
    json_body = request.content_type == "application/json"
    limit = MAX_JSON_BYTES if json_body else config.classify_max_bytes + MULTIPART_SLACK
    async with request.app[UPLOADS].slot(request, limit, caller_key(request)) as held:
        if json_body:
            names, call = _call_from_json(await held.read(request.content.read, MAX_JSON_BYTES),
                                          config.classify_max_images)
            responses = [await _classified(request, call, _deadline(request))]
        else:
            names = []
            responses = await _forward(request, held, names)
    results = [r for response in responses for r in response.results]
    first = responses[0]
    return web.json_response({
        "model_version": first.model_version, "threshold": first.threshold,
        "results": [_result(n, r) for n, r in zip(names, results, strict=True)]})
