"""Tasks at the gateway: every page and API route again under /t/<task>/ for that task
(the page's own calls are relative, so a page at /t/hydrant/ talks to /t/hydrant/api/...),
the root sent to the default task's address so that the URL always says which task a page
is on, and the tasks API: the list for everyone, and for admins adding, archiving and
restoring tasks at run time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from annotation_gateway import convert, validation
from annotation_gateway.errors import ApiError
from annotation_gateway.handlers import (
    CONFIG,
    DIRECTORY,
    TRAINER,
    json_response,
    read_json,
)
from annotation_gateway.identity import identity_of, requires_admin
from hitl.v1 import trainer_pb2

PREFIX = "/t/{task}"
# Pages served for a task as well as for the default one (besides every /api/ route).
TASK_PAGES = frozenset({"/", "/review", "/models"})
# Routes about tasks as a whole, never under a task's prefix.
GLOBAL_PREFIX = "/api/tasks"
TEXT_FIELDS = ("name", "display_name", "question", "guidelines", "positive_class",
               "detector_class", "mix")


def serve_page(request: web.Request, name: str) -> web.FileResponse:
    response = web.FileResponse(Path(request.app[CONFIG].web_dir) / name)
    response.headers["Cache-Control"] = "no-cache"
    return response


async def index(request: web.Request) -> web.StreamResponse:
    """The annotation page. At / the browser is sent to the default task's own address;
    at /t/<task>/ it is that task's page, or a 404 when the trainer has no such task.
    A trainer that cannot be asked leaves the page served as it is: it keeps working (and
    keeps labels queued) until the trainer is back."""
    task = request.match_info.get("task")
    try:
        found = await request.app[DIRECTORY].find(validation.task_name(task or ""))
    except grpc.aio.AioRpcError:
        return serve_page(request, "index.html")
    if found is None:
        raise web.HTTPNotFound(text=f"There is no task {task!r}: see /tasks for the tasks.")
    if task is None:
        raise web.HTTPFound(found["url"])
    return serve_page(request, "index.html")


async def tasks_page(request: web.Request) -> web.FileResponse:
    return serve_page(request, "tasks.html")


async def task_root(request: web.Request) -> web.StreamResponse:
    """/t/<task> without its slash: the page's relative calls need the slash."""
    raise web.HTTPFound(f"/t/{validation.task_name(request.match_info['task'])}/")


# --- the API ---------------------------------------------------------------------------


async def list_tasks(request: web.Request) -> web.Response:
    """Every task that serves, in the trainer's order; admins also get archived ones."""
    identity = identity_of(request)
    directory = request.app[DIRECTORY]
    await directory.refresh(force=True)
    return json_response({"tasks": directory.listing(identity is not None and identity.admin),
                          "default": directory.default})


def task_request(body: dict[str, Any]) -> trainer_pb2.Task:
    values: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = body.get(name, "")
        if not isinstance(value, str) or len(value) > validation.MAX_TASK_TEXT:
            raise ApiError(400, "invalid_task", f"{name} must be text of at most "
                           f"{validation.MAX_TASK_TEXT} characters")
        values[name] = value.strip() if name != "guidelines" else value
    target = body.get("target_f1", 0)
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 <= target <= 1:
        raise ApiError(400, "invalid_task", "target_f1 must be a number in (0, 1]")
    if not validation.TASK_NAME.fullmatch(values["name"]):
        raise ApiError(400, "invalid_task", "name: 1 to 40 lowercase letters, digits and "
                       "'-', starting with a letter or digit")
    return trainer_pb2.Task(**values, target_f1=float(target))


@requires_admin
async def create_task(request: web.Request) -> web.Response:
    message = task_request(await read_json(request))
    response = await request.app[TRAINER].CreateTask(
        trainer_pb2.CreateTaskRequest(task=message), timeout=request.app[CONFIG].task_deadline_s)
    await request.app[DIRECTORY].refresh(force=True)
    return json_response({"task": convert.task(response.task)}, status=201)


async def _archive(request: web.Request, archived: bool) -> web.Response:
    name = validation.task_name(request.match_info["name"])
    response = await request.app[TRAINER].ArchiveTask(
        trainer_pb2.ArchiveTaskRequest(task=name, archived=archived),
        timeout=request.app[CONFIG].task_deadline_s)
    await request.app[DIRECTORY].refresh(force=True)
    return json_response({"task": convert.task(response.task)})


@requires_admin
async def archive_task(request: web.Request) -> web.Response:
    return await _archive(request, True)


@requires_admin
async def restore_task(request: web.Request) -> web.Response:
    return await _archive(request, False)


def add_routes(app: web.Application) -> None:
    """The tasks API and page, then every page and API route again under /t/<task>/."""
    for route in list(app.router.routes()):
        path = route.resource.canonical if route.resource is not None else ""
        mirrored = path in TASK_PAGES or (path.startswith("/api/")
                                          and not path.startswith(GLOBAL_PREFIX))
        if mirrored and route.method != "HEAD":
            app.router.add_route(route.method, PREFIX + path, route.handler)
    app.router.add_get(PREFIX, task_root)
    app.router.add_get("/tasks", tasks_page)
    app.router.add_get("/api/tasks", list_tasks)
    app.router.add_post("/api/tasks", create_task)
    app.router.add_post("/api/tasks/{name}/archive", archive_task)
    app.router.add_post("/api/tasks/{name}/restore", restore_task)
