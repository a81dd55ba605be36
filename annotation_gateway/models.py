"""The models: the list, one model as a downloadable self-describing file, activation
(roll back or forward) and lifting a pin (back to following the newest model).

Activation needs no more than the API's access token for now (GATEWAY_TOKEN); an
administrator role is to come with annotator accounts."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from annotation_gateway import convert
from annotation_gateway.errors import ApiError
from annotation_gateway.handlers import CONFIG, TRAINER, task_of
from annotation_gateway.identity import requires_admin
from hitl.v1 import trainer_pb2

VERSION = re.compile(r"^v[0-9]{1,9}$")
FORMATS = {"npz": trainer_pb2.MODEL_FORMAT_NPZ, "json": trainer_pb2.MODEL_FORMAT_JSON}


def _version(request: web.Request) -> str:
    version = request.match_info["version"]
    if not VERSION.match(version):
        raise ApiError(400, "invalid_version", "a model version looks like v0012")
    return version


def record(m: trainer_pb2.ModelRecord, task: str = "") -> dict[str, Any]:
    estimate = convert.estimate(m.estimate) if m.HasField("estimate") else None
    return {
        "version": m.version,
        "create_time": m.create_time.ToJsonString() if m.HasField("create_time") else None,
        "labels": {"total": m.labels, "positive": m.positives, "negative": m.negatives},
        "validation": convert.metrics(m.validation) if m.HasField("validation") else None,
        "evaluation": convert.metrics(m.evaluation) if m.HasField("evaluation") else None,
        "estimate": estimate,
        "extractor": {"name": m.extractor.name, "version": m.extractor.version,
                      "dimension": m.extractor.dimension},
        "threshold": m.threshold,
        "active": m.active,
        "compatible": m.compatible,
        "download_url": f"{f'/t/{task}' if task else ''}/api/models/{m.version}",
    }


@requires_admin
async def list_models(request: web.Request) -> web.Response:
    response = await request.app[TRAINER].ListModels(
        trainer_pb2.ListModelsRequest(task=task_of(request)),
        timeout=request.app[CONFIG].rpc_deadline_s)
    return web.json_response({"pinned": response.pinned,
                              "models": [record(m, task_of(request)) for m in response.models]})


@requires_admin
async def download(request: web.Request) -> web.Response:
    version = _version(request)
    fmt = request.query.get("format", "npz")
    if fmt not in FORMATS:
        raise ApiError(400, "invalid_format", "format must be npz or json")
    response = await request.app[TRAINER].GetModel(
        trainer_pb2.GetModelRequest(version=version, format=FORMATS[fmt],
                                    task=task_of(request)),
        timeout=request.app[CONFIG].rpc_deadline_s)
    filename = re.sub(r"[^A-Za-z0-9._-]", "-", response.filename) or f"{version}.{fmt}"
    return web.Response(body=response.data, headers={
        "Content-Type": "application/json" if fmt == "json" else "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "private, max-age=3600"})


@requires_admin
async def activate(request: web.Request) -> web.Response:
    version = _version(request)
    response = await request.app[TRAINER].ActivateModel(
        trainer_pb2.ActivateModelRequest(version=version, task=task_of(request)),
        timeout=request.app[CONFIG].rpc_deadline_s)
    return web.json_response({"model": record(response.model, task_of(request)),
                              "pinned": response.pinned})


@requires_admin
async def unpin(request: web.Request) -> web.Response:
    """Lifts a pin: the newest model that fits today's features is put to use, and every
    model trained from then on as soon as it exists (ActivateModel of the newest)."""
    deadline, task = request.app[CONFIG].rpc_deadline_s, task_of(request)
    listed = await request.app[TRAINER].ListModels(trainer_pb2.ListModelsRequest(task=task),
                                                   timeout=deadline)
    newest = next((m for m in listed.models if m.compatible), None)  # newest first
    if newest is None:
        raise ApiError(409, "no_model", "no kept model fits the features in use")
    response = await request.app[TRAINER].ActivateModel(
        trainer_pb2.ActivateModelRequest(version=newest.version, task=task), timeout=deadline)
    return web.json_response({"model": record(response.model, task_of(request)),
                              "pinned": response.pinned})
