"""POST /api/labels/import: an admin brings labels in bulk (e.g. from another tool) for
pool items nobody was served. Each is recorded under the admin's name with the strategy
`imported`, so the export and the log say who brought it; a row the trainer cannot take
is refused on its own, with its index and why."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from annotation_gateway import validation
from annotation_gateway.errors import ApiError
from annotation_gateway.handlers import CONFIG, TRAINER, task_of
from annotation_gateway.identity import annotator_of, requires_admin
from annotation_gateway.ratelimit import caller_key
from annotation_gateway.uploads import UPLOADS
from hitl.v1 import common_pb2, trainer_pb2

MAX_LABELS = 1000
# About 200 bytes a row, with room for notes.
MAX_IMPORT_BYTES = 1 << 20
LABELS = {"positive": common_pb2.LABEL_POSITIVE, "negative": common_pb2.LABEL_NEGATIVE}


def _row(index: int, raw: Any) -> trainer_pb2.ImportedLabel:
    if not isinstance(raw, dict) or raw.get("label") not in LABELS:
        raise ApiError(400, "invalid_label", f"row {index}: label must be \"positive\" or "
                       "\"negative\"")
    raw_id = raw.get("id")
    return trainer_pb2.ImportedLabel(
        annotation_id=uuid.uuid4().hex if raw_id is None else validation.annotation_id(raw_id),
        item_id=validation.item_id(str(raw.get("item_id") or "")),
        label=LABELS[raw["label"]], note=validation.note(raw.get("note")))


@requires_admin
async def import_labels(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    # An upload like any other: it counts against the process's bound on uploads.
    async with request.app[UPLOADS].slot(request, MAX_IMPORT_BYTES, caller_key(request)) as held:
        raw = await held.read(request.content.read, MAX_IMPORT_BYTES)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    rows = body.get("labels") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ApiError(400, "invalid_labels", 'send {"labels": [{"item_id": ..., "label": '
                                              '"positive"}, ...]}')
    if len(rows) > MAX_LABELS:
        raise ApiError(400, "too_many_labels", f"at most {MAX_LABELS} labels per import")
    response = await request.app[TRAINER].ImportLabels(
        trainer_pb2.ImportLabelsRequest(importer=annotator_of(request),
                                        labels=[_row(i, r) for i, r in enumerate(rows)],
                                        task=task_of(request)),
        timeout=request.app[CONFIG].rpc_deadline_s)
    return web.json_response({
        "recorded": response.recorded, "duplicates": response.duplicates,
        "refused": [{"index": r.index, "message": r.message} for r in response.refused]})
