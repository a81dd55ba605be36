"""The JSON API: each handler checks its input, makes one call with a deadline, and
converts the answer. gRPC errors are turned into HTTP errors by the error middleware.
Every route is also served under /t/<task>/ for that task (`tasks.py`); without the
prefix a call is about the trainer's default task."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from aiohttp import web

from annotation_gateway import convert, downloads, export, validation
from annotation_gateway.config import Config
from annotation_gateway.directory import TaskDirectory
from annotation_gateway.errors import ApiError
from annotation_gateway.guidelines import Guidelines, serve_example
from annotation_gateway.identity import annotator_of, identity_of, requires_admin, status_for
from annotation_gateway.live import StatusHubs, stream_status
from annotation_gateway.metrics import ANNOTATIONS, UNDOS
from annotation_gateway.ratelimit import LEASES, limited
from hitl.v1 import feature_pb2, feature_pb2_grpc, trainer_pb2, trainer_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_ITEMS = 20
IMAGE_MAX_AGE_S = 24 * 3600
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp"})

CONFIG = web.AppKey("config", Config)
# The stubs over grpc.aio channels (the generated stubs' async form, a type only).
TRAINER: web.AppKey[trainer_pb2_grpc.TrainerServiceAsyncStub] = web.AppKey("trainer")
FEATURES: web.AppKey[feature_pb2_grpc.FeatureServiceAsyncStub] = web.AppKey("features")
HUBS = web.AppKey("hubs", StatusHubs)
DIRECTORY = web.AppKey("directory", TaskDirectory)
EXTRACTOR = web.AppKey("extractor", dict)
GUIDELINES = web.AppKey("guidelines", Guidelines)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    body = await request.read()  # client_max_size bounds this
    try:
        return validation.json_object(json.loads(body))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None


def _deadline(request: web.Request) -> float:
    return request.app[CONFIG].rpc_deadline_s


def task_of(request: web.Request) -> str:
    """The task a request is about: <task> in /t/<task>/...; "" (the default task) for a
    path without it."""
    return validation.task_name(request.match_info.get("task", ""))


async def known_task(request: web.Request) -> dict[str, Any]:
    """The request's task as the trainer lists it; 404 when there is no such task."""
    task = task_of(request)
    found = await request.app[DIRECTORY].find(task)
    if found is None:
        raise ApiError(404, "no_such_task", f"there is no task {task!r}")
    return found


# --- status ------------------------------------------------------------------------

async def _extractor(request: web.Request) -> dict[str, Any] | None:
    """The feature extractor's description, asked once and then remembered."""
    cached = request.app[EXTRACTOR]
    if not cached:
        try:
            info = (await request.app[FEATURES].Describe(
                feature_pb2.DescribeRequest(), timeout=_deadline(request))).extractor
        except Exception:  # informative only: the status is useful without it
            return None
        cached.update(name=info.name, version=info.version, backbone=info.backbone,
                      detector=info.detector, device=info.device)
    return dict(cached)


async def get_status(request: web.Request) -> web.Response:
    response = await request.app[TRAINER].GetStatus(
        trainer_pb2.GetStatusRequest(task=task_of(request)), timeout=_deadline(request))
    body = status_for(convert.status(response.status), identity_of(request))
    assert body is not None
    body["extractor"] = await _extractor(request)
    return json_response(body)


async def events(request: web.Request) -> web.StreamResponse:
    identity = identity_of(request)
    task = task_of(request)
    if task and (await known_task(request))["archived"]:
        raise ApiError(409, "archived", f"task {task!r} is archived")
    return await stream_status(request, request.app[HUBS].hub(task),
                               view=lambda status: status_for(status, identity))


# --- items -------------------------------------------------------------------------

@limited(LEASES, annotator_of)
async def next_items(request: web.Request) -> web.Response:
    annotator = annotator_of(request)
    n = validation.count(request.query.get("n"), DEFAULT_ITEMS)
    held = validation.held_ids(request.query.getall("held", []))
    response = await request.app[TRAINER].GetNextItems(
        trainer_pb2.GetNextItemsRequest(annotator=annotator, count=n, held_item_ids=held,
                                        task=task_of(request)),
        timeout=_deadline(request))
    return json_response({"items": [convert.item(i) for i in response.items]})


async def _image(request: web.Request, thumbnail: bool) -> web.Response:
    item_id = validation.item_id(request.match_info["item_id"])
    response = await request.app[TRAINER].GetImage(
        trainer_pb2.GetImageRequest(item_id=item_id, thumbnail=thumbnail),
        timeout=_deadline(request))
    etag = '"' + hashlib.sha256(response.data).hexdigest()[:32] + '"'
    headers = {"Cache-Control": f"private, max-age={IMAGE_MAX_AGE_S}", "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    content_type = response.content_type.lower()
    if content_type not in IMAGE_TYPES:
        # Whatever else the bytes are, they must never be rendered as a document.
        content_type = "application/octet-stream"
        headers["Content-Disposition"] = "attachment"
    return web.Response(body=response.data, content_type=content_type, headers=headers)


async def image(request: web.Request) -> web.Response:
    return await _image(request, thumbnail=False)


async def thumbnail(request: web.Request) -> web.Response:
    return await _image(request, thumbnail=True)


# --- guidelines --------------------------------------------------------------------

async def guidelines(request: web.Request) -> web.Response:
    """The task's own guidelines where it has them, else the configured ones."""
    body = request.app[GUIDELINES].body()
    try:
        own = (await known_task(request))["guidelines"]
    except grpc.aio.AioRpcError:  # the trainer cannot say: the configured ones
        own = ""
    return json_response({"text": own, "examples": []} if own else body)


async def guideline_example(request: web.Request) -> web.FileResponse:
    return await serve_example(request.app[GUIDELINES], request.match_info["index"])


# --- annotations -------------------------------------------------------------------

async def add_annotation(request: web.Request) -> web.Response:
    annotator = annotator_of(request)
    body = await read_json(request)
    raw_label = body.get("label")
    label = convert.LABEL_BY_NAME.get(raw_label) if isinstance(raw_label, str) else None
    if label is None:
        raise ApiError(400, "invalid_label", "label must be \"positive\", \"negative\", "
                       "\"skip\" or \"unsure\"")
    request_pb = trainer_pb2.AddAnnotationRequest(
        annotation_id=validation.annotation_id(body.get("id")),
        item_id=validation.item_id(str(body.get("item_id") or "")),
        label=label, annotator=annotator,
        duration_ms=validation.duration_ms(body.get("duration_ms")),
        note=validation.note(body.get("note")), task=task_of(request))
    given = validation.given_at(body.get("given_at"))
    if given is not None:
        request_pb.given_time.FromNanoseconds(int(given * 1e9))
    response = await request.app[TRAINER].AddAnnotation(request_pb, timeout=_deadline(request))
    ANNOTATIONS.labels("duplicate" if response.duplicate else "new").inc()
    return json_response({"annotation": convert.own_annotation(response.annotation),
                          "duplicate": response.duplicate,
                          "gold_check": convert.gold_check(response)},
                         status=200 if response.duplicate else 201)


async def undo_annotation(request: web.Request) -> web.Response:
    annotator = annotator_of(request)
    annotation_id = validation.annotation_id(request.match_info["annotation_id"])
    response = await request.app[TRAINER].UndoAnnotation(
        trainer_pb2.UndoAnnotationRequest(annotation_id=annotation_id, annotator=annotator,
                                          task=task_of(request)),
        timeout=_deadline(request))
    UNDOS.inc()
    return json_response({"annotation": convert.own_annotation(response.annotation)})


@requires_admin
async def export_labels(request: web.Request) -> web.StreamResponse:
    fmt = request.query.get("format", "csv")
    if fmt not in export.FORMATS:
        raise ApiError(400, "invalid_format", "format must be csv, jsonl or openimages")
    include_undone = validation.flag(request.query.get("include_undone"), "include_undone")
    include_skipped = validation.flag(request.query.get("include_skipped"), "include_skipped")
    config = request.app[CONFIG]
    call = request.app[TRAINER].ExportLabels(
        trainer_pb2.ExportLabelsRequest(include_undone=include_undone,
                                        include_skipped=include_skipped, task=task_of(request)),
        timeout=config.export_deadline_s)
    batches = aiter(call)
    # The first batch is read before answering, so that an unavailable trainer is an
    # HTTP error rather than an empty file.
    first = await anext(batches, None)
    content_type, filename = export.FORMATS[fmt]
    if fmt == "openimages":
        status = await request.app[TRAINER].GetStatus(
            trainer_pb2.GetStatusRequest(task=task_of(request)), timeout=_deadline(request))
        rows = [convert.annotation(a) for a in (first.annotations if first else ())]
        async for batch in batches:
            rows.extend(convert.annotation(a) for a in batch.annotations)
        return web.Response(text=export.openimages_rows(rows, status.status.label_id),
                            content_type=content_type.split(";")[0], charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    row = export.csv_row if fmt == "csv" else export.jsonl_row

    def text_of(annotations: Iterable[trainer_pb2.Annotation]) -> str:
        return "".join(row(convert.annotation(a)) for a in annotations)

    async def rest() -> AsyncIterator[str]:
        if first is not None:
            async for batch in batches:
                yield text_of(batch.annotations)

    head = (export.csv_header() if fmt == "csv" else "") + (
        text_of(first.annotations) if first is not None else "")
    return await downloads.stream(request, {
        "Content-Type": content_type,
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store"}, head, rest(), "export")
