"""POST /api/classify: new images, as JSON `{"urls": [...]}` or as a multipart upload of
parts named `image`, classified by the model in use. Every image gets its own result or
error, in request order; a bad image never costs the others their answers.

Uploads are read part by part against the configured limits, so an oversized request is
refused (413) after at most the limit has been read, never buffered whole."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from annotation_gateway.errors import ApiError
from annotation_gateway.handlers import CONFIG, TRAINER, task_of
from hitl.v1 import common_pb2, feature_pb2, trainer_pb2

# What aiohttp raises for a malformed multipart body (bad boundary, headers or encoding).
MALFORMED = (ValueError, AssertionError, HttpProcessingError)
MAX_JSON_BYTES = 64 * 1024
MAX_URL_CHARS = 2048
MAX_NAME_CHARS = 256
READ_CHUNK = 64 * 1024
DECISIONS = {common_pb2.LABEL_POSITIVE: "positive", common_pb2.LABEL_NEGATIVE: "negative"}


async def read_limited(read: Callable[[int], Awaitable[bytes]], limit: int) -> bytes:
    """Everything `read` gives, or 413 once it passes `limit` bytes."""
    chunks, size = [], 0
    while chunk := await read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the request is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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


async def _refs_from_multipart(request: web.Request, max_images: int,
                               max_bytes: int) -> tuple[list[str], list[feature_pb2.ImageRef]]:
    try:
        reader = await request.multipart()
    except MALFORMED:
        raise ApiError(400, "invalid_multipart", "the multipart body cannot be read") from None
    names: list[str] = []
    refs: list[feature_pb2.ImageRef] = []
    budget = max_bytes
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
        if len(refs) >= max_images:
            raise ApiError(400, "too_many_images", f"at most {max_images} images per request")
        try:
            data = await read_limited(part.read_chunk, budget)
        except MALFORMED:
            raise ApiError(400, "invalid_multipart",
                           "the multipart body cannot be read") from None
        budget -= len(data)
        names.append((part.filename or f"image {len(refs) + 1}")[:MAX_NAME_CHARS])
        refs.append(feature_pb2.ImageRef(id=str(len(refs)), data=data))
    if not refs:
        raise ApiError(400, "no_images", "send at least one part named image")
    return names, refs


def _result(name: str, r: trainer_pb2.ClassifyResult) -> dict[str, Any]:
    if r.WhichOneof("outcome") != "classification":
        kind = feature_pb2.ErrorKind.Name(r.error.kind) if r.HasField("error") else "INTERNAL"
        return {"name": name, "error": {
            "code": kind.removeprefix("ERROR_KIND_").lower(),
            "message": r.error.message or "no answer for this image",
            "retryable": r.error.retryable}}
    c = r.classification
    e = c.evidence
    box = ({"x1": e.box.x1, "y1": e.box.y1, "x2": e.box.x2, "y2": e.box.y2}
           if e.HasField("box") else None)
    return {"name": name, "probability": c.probability,
            "decision": DECISIONS.get(c.decision, "negative"), "model_version": c.model_version,
            "evidence": {"score": e.score, "box": box, "count": e.count}}


async def classify(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    if request.content_type == "application/json":
        names, refs = _refs_from_json(await read_limited(request.content.read, MAX_JSON_BYTES),
                                      config.classify_max_images)
    elif request.content_type == "multipart/form-data":
        names, refs = await _refs_from_multipart(request, config.classify_max_images,
                                                 config.classify_max_bytes)
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send application/json with urls, or multipart/form-data with "
                       "parts named image")
    response = await request.app[TRAINER].Classify(
        trainer_pb2.ClassifyRequest(images=refs, task=task_of(request)),
        timeout=config.classify_deadline_s)
    return web.json_response({
        "model_version": response.model_version, "threshold": response.threshold,
        "results": [_result(n, r) for n, r in zip(names, response.results, strict=True)]})
