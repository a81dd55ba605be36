"""The model's predictions: the whole dataset as a CSV or JSON-lines download, pages
ordered for the review view, and the job that scores every item."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from annotation_gateway import convert, downloads
from annotation_gateway.errors import ApiError
from annotation_gateway.handlers import CONFIG, TRAINER, task_of
from annotation_gateway.identity import identity_of, requires_admin
from hitl import prediction_rows
from hitl.v1 import common_pb2, trainer_pb2

ORDERS = {"most_likely": trainer_pb2.PREDICTION_ORDER_MOST_LIKELY,
          "borderline": trainer_pb2.PREDICTION_ORDER_BORDERLINE}
MAX_TOKEN_CHARS = 100


@requires_admin
async def export(request: web.Request) -> web.StreamResponse:
    fmt = request.query.get("format", "csv")
    if fmt not in prediction_rows.FORMATS:
        raise ApiError(400, "invalid_format", "format must be csv or jsonl")
    call = request.app[TRAINER].ExportPredictions(
        trainer_pb2.ExportPredictionsRequest(task=task_of(request)),
        timeout=request.app[CONFIG].export_deadline_s)
    batches = aiter(call)
    # The first batch is read before answering: no model or no trainer is an HTTP error,
    # not an empty file.
    first = await anext(batches, None)
    content_type, filename = prediction_rows.FORMATS[fmt]
    headers = {"Content-Type": content_type, "Cache-Control": "no-store",
               "Content-Disposition": f'attachment; filename="{filename}"'}
    head = prediction_rows.header(fmt)
    if first is not None:
        headers["X-Model-Version"] = first.model_version
        headers["X-Total-Rows"] = str(first.total)
        head += prediction_rows.rows(fmt, first)

    async def rest() -> AsyncIterator[str]:
        if first is not None:
            async for batch in batches:
                yield prediction_rows.rows(fmt, batch)

    return await downloads.stream(request, headers, head, rest(), "predictions export")


def _limit(raw: str | None) -> int:
    if raw is None:
        return 50
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_limit", "limit must be an integer") from None
    if not 1 <= value <= 200:
        raise ApiError(400, "invalid_limit", "limit must be between 1 and 200")
    return value


async def review(request: web.Request) -> web.Response:
    order = request.query.get("order", "most_likely")
    if order not in ORDERS:
        raise ApiError(400, "invalid_order", "order must be most_likely or borderline")
    token = request.query.get("page_token", "")
    if len(token) > MAX_TOKEN_CHARS:
        raise ApiError(400, "invalid_page_token", "not a page token this API gave")
    identity = identity_of(request)
    # The page's items are served to whoever it is shown to: they may answer them.
    response = await request.app[TRAINER].ListPredictions(
        trainer_pb2.ListPredictionsRequest(order=ORDERS[order],
                                           page_size=_limit(request.query.get("limit")),
                                           page_token=token, task=task_of(request),
                                           annotator=identity.name if identity else ""),
        timeout=request.app[CONFIG].rpc_deadline_s)
    return web.json_response({
        "model_version": response.model_version, "threshold": response.threshold,
        "total": response.total, "next_page_token": response.next_page_token or None,
        "items": [{
            "id": i.id, "probability": i.probability,
            "decision": "positive" if i.decision == common_pb2.LABEL_POSITIVE else "negative",
            "image_url": i.image_url or convert.image_path(i.id, thumbnail=False),
            "thumbnail_url": (i.thumbnail_url or i.image_url
                              or convert.image_path(i.id, thumbnail=True)),
        } for i in response.items]})


@requires_admin
async def start_job(request: web.Request) -> web.Response:
    response = await request.app[TRAINER].ScoreDataset(
        trainer_pb2.ScoreDatasetRequest(task=task_of(request)),
        timeout=request.app[CONFIG].rpc_deadline_s)
    return web.json_response({"scoring": convert.scoring(response.scoring)}, status=202)
