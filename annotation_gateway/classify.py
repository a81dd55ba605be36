"""POST /api/classify: new images, as JSON `{"urls": [...]}` or as a multipart upload of
parts named `image`, classified by the model in use. Every image gets its own result or
error, in request order; a bad image never costs the others their answers.

An upload is forwarded as it is read: parts go to the trainer in calls of a few MiB while
the next parts are read, so a request never holds all its images at once, and the
process's byte budget (`uploads`) bounds what all requests hold together. An oversized
request is refused (413) after at most the limit has been read. Each annotator has a rate
(GATEWAY_CLASSIFY_RATE)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from annotation_gateway.errors import ApiError
from annotation_gateway.handlers import CONFIG, TRAINER, task_of
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
# A call to the trainer, filled part by part: each image's bytes are copied once, into the
# message that is sent (a list of ImageRefs passed to ClassifyRequest(images=...) would be
# copied again whole, on the event loop, and held twice against a budget counting once).
Call = trainer_pb2.ClassifyRequest


def _refs_from_json(body: bytes, max_images: int) -> tuple[list[str], list[feature_pb2.ImageRef]]:
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
    return list(urls), [feature_pb2.ImageRef(id=str(k), url=u) for k, u in enumerate(urls)]


async def _calls(request: web.Request, held: Held, names: list[str], max_images: int,
                 max_bytes: int, task: str) -> AsyncIterator[tuple[Call, int]]:
    """The upload's parts, read one after the other, gathered into calls of about
    CALL_BYTES: (the call, bytes its images hold of the budget)."""
    try:
        reader = await request.multipart()
    except MALFORMED:
        raise ApiError(400, "invalid_multipart", "the multipart body cannot be read") from None
    call = Call(task=task)
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
        call.images.add(id=str(len(names) - 1), data=data)
        size += len(data)
        del data  # the message holds the only copy now
        if size >= CALL_BYTES:
            yield call, size
            call, size = Call(task=task), 0
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


async def _forward(request: web.Request, held: Held, names: list[str]
                   ) -> list[trainer_pb2.ClassifyResponse]:
    """Sends the upload's calls as they fill, at most CALLS_IN_FLIGHT at once; each call's
    bytes go back to the budget when its answer is in."""
    config = request.app[CONFIG]
    stub = request.app[TRAINER]

    async def send(call: Call, size: int) -> trainer_pb2.ClassifyResponse:
        try:
            return await stub.Classify(call, timeout=config.classify_deadline_s)
        finally:
            call.Clear()
            await held.release(size)

    pending: list[asyncio.Task[trainer_pb2.ClassifyResponse]] = []
    try:
        async for call, size in _calls(request, held, names, config.classify_max_images,
                                       config.classify_max_bytes, task_of(request)):
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
            names, refs = _refs_from_json(await held.read(request.content.read, MAX_JSON_BYTES),
                                          config.classify_max_images)
            responses = [await request.app[TRAINER].Classify(
                trainer_pb2.ClassifyRequest(images=refs, task=task_of(request)),
                timeout=config.classify_deadline_s)]
        else:
            names = []
            responses = await _forward(request, held, names)
    results = [r for response in responses for r in response.results]
    first = responses[0]
    return web.json_response({
        "model_version": first.model_version, "threshold": first.threshold,
        "results": [_result(n, r) for n, r in zip(names, results, strict=True)]})
