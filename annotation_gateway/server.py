"""The gateway application: routes, middlewares and the lifecycle of its gRPC channels.
`init_app(config)` is shared by `python -m annotation_gateway` and the tests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from annotation_gateway import (
    access,
    classify,
    handlers,
    imports,
    models,
    predictions,
    security,
    sessions,
    tasks,
)
from annotation_gateway.config import Config
from annotation_gateway.directory import TaskDirectory
from annotation_gateway.errors import ApiError, error_response, from_rpc_error
from annotation_gateway.guidelines import Guidelines
from annotation_gateway.handlers import (
    CONFIG,
    DIRECTORY,
    EXTRACTOR,
    FEATURES,
    GUIDELINES,
    HUBS,
    TRAINER,
)
from annotation_gateway.identity import Identities
from annotation_gateway.live import StatusHubs
from annotation_gateway.metrics import LATENCY, REQUESTS
from annotation_gateway.ratelimit import LEASES, LOGINS, RateLimit
from annotation_gateway.uploads import UPLOADS, Uploads, budget_bytes
from annotation_gateway.validation import MAX_BODY_BYTES
from hitl.channels import ClientSecurity, open_channel
from hitl.logs import new_request_id, request_id
from hitl.v1 import feature_pb2_grpc, trainer_pb2_grpc

log = logging.getLogger(__name__)

TRAINER_SERVICE = "hitl.v1.TrainerService"
FEATURE_SERVICE = "hitl.v1.FeatureService"
HEALTH_DEADLINE_S = 1.0
OPENAPI_FILE = Path(__file__).with_name("openapi.json")
# npm packages the pages use, served from GATEWAY_VENDOR_DIR: (URL name, folder, what
# is missing without it).
VENDORED = (("uplot", "uplot/dist", "the learning-curve chart is disabled"),
            ("swagger-ui", "swagger-ui-dist", "/api/docs cannot render the API"))
CLOSING = web.AppKey("closing", asyncio.Event)
HEALTH = web.AppKey("health", dict)


@web.middleware
async def errors_middleware(request: web.Request, handler: security.Handler) -> web.StreamResponse:
    """Every API failure becomes a JSON error body with a fitting status."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except grpc.aio.AioRpcError as exc:
        log.info("service call failed", extra={"code": exc.code().name, "path": request.path})
        return from_rpc_error(exc, "trainer")
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        code = exc.reason.lower().replace(" ", "_")
        message = ("the request body is too large" if exc.status == 413 else exc.reason)
        allow = exc.headers.get("Allow")
        return error_response(exc.status, code, message,
                              headers={"Allow": allow} if allow is not None else None)
    except Exception:
        log.exception("unexpected error", extra={"path": request.path})
        return error_response(500, "internal", "unexpected error in the gateway")


@web.middleware
async def observe_middleware(request: web.Request,
                             handler: security.Handler) -> web.StreamResponse:
    """Request id for the gRPC calls made on this request's behalf, and metrics."""
    request_id.set(request.headers.get("X-Request-Id", "")[:64] or new_request_id())
    started = time.perf_counter()
    resource = request.match_info.route.resource
    name = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        REQUESTS.labels(request.method, name, str(status)).inc()
        LATENCY.labels(name).observe(time.perf_counter() - started)


async def _channels(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    security = ClientSecurity(config.grpc_token, config.grpc_ca, config.grpc_client_cert,
                              config.grpc_client_key)
    trainer = open_channel(config.trainer_addr, TRAINER_SERVICE,
                           default_deadline_s=config.rpc_deadline_s, security=security)
    features = open_channel(config.feature_addr, FEATURE_SERVICE,
                            default_deadline_s=config.rpc_deadline_s, security=security)
    app[TRAINER] = trainer_pb2_grpc.TrainerServiceStub(trainer)
    app[FEATURES] = feature_pb2_grpc.FeatureServiceStub(features)
    app[HEALTH] = {"trainer": health_pb2_grpc.HealthStub(trainer),
                   "feature": health_pb2_grpc.HealthStub(features)}
    hubs = app[HUBS] = StatusHubs(app[TRAINER])
    app[DIRECTORY] = TaskDirectory(app[TRAINER], config.rpc_deadline_s)
    yield
    await hubs.close()
    await trainer.close()
    await features.close()


async def _on_shutdown(app: web.Application) -> None:
    app[CLOSING].set()
    if HUBS in app:
        await app[HUBS].close()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _serving(stub: health_pb2_grpc.HealthStub, service: str) -> str:
    try:
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                  timeout=HEALTH_DEADLINE_S)
    except grpc.aio.AioRpcError:
        return "unavailable"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)).lower()


async def readyz(request: web.Request) -> web.Response:
    """Ready while not shutting down. The services' health is reported but does not
    take the gateway out of rotation: the page keeps working (and queues labels) while
    the trainer is away, which it could not do if it could not even be loaded."""
    health = request.app[HEALTH]
    trainer, feature = await asyncio.gather(_serving(health["trainer"], TRAINER_SERVICE),
                                            _serving(health["feature"], FEATURE_SERVICE))
    closing = request.app[CLOSING].is_set()
    return web.json_response({"status": "closing" if closing else "ready",
                              "trainer": trainer, "feature": feature},
                             status=503 if closing else 200)


def _page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def page(request: web.Request) -> web.FileResponse:
        return tasks.serve_page(request, name)
    return page


async def login_page(request: web.Request) -> web.StreamResponse:
    """The sign-in form; a gateway without annotator tokens has nothing to sign in with,
    so its page is the annotation page."""
    if request.app[sessions.IDENTITIES].open:
        raise web.HTTPSeeOther("/")
    return await _page("login.html")(request)


async def openapi(request: web.Request) -> web.FileResponse:
    return web.FileResponse(OPENAPI_FILE, headers={"Content-Type": "application/json",
                                                   "Cache-Control": "no-cache"})


def init_app(config: Config) -> web.Application:
    """The application; raises hitl.config.ConfigError, in one line, when the configuration
    must not serve (e.g. another interface than loopback without annotator tokens)."""
    identities = Identities(config)
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[errors_middleware, observe_middleware,
                     access.make_host_middleware(config),
                     access.make_identity_middleware(identities),
                     security.make_csrf_middleware(config.allowed_origins)])
    app[CONFIG] = config
    app[sessions.IDENTITIES] = identities
    app[LOGINS] = RateLimit(config.login_rate, "sign-in attempts")
    app[LEASES] = RateLimit(config.lease_rate, "item requests")
    app[classify.CLASSIFY_RATE] = RateLimit(config.classify_rate, "classify requests")
    app[UPLOADS] = Uploads(config.upload_requests, budget_bytes(config.upload_bytes),
                           config.uploads_per_caller)
    app[GUIDELINES] = Guidelines.from_config(config)
    app[EXTRACTOR] = {}
    app[CLOSING] = asyncio.Event()
    app.cleanup_ctx.append(_channels)
    app.on_shutdown.append(_on_shutdown)
    app.on_response_prepare.append(security.add_security_headers)

    app.router.add_get("/", tasks.index)
    app.router.add_get("/login", login_page)
    app.router.add_get("/review", _page("review.html"))
    app.router.add_get("/models", _page("models.html"))
    app.router.add_get("/api/docs", _page("docs.html"))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_post("/api/login", sessions.login)
    app.router.add_post("/api/logout", sessions.logout)
    app.router.add_get("/api/session", sessions.get_session)
    app.router.add_post("/api/session", sessions.set_session)
    app.router.add_get("/api/status", handlers.get_status)
    app.router.add_get("/api/events", handlers.events)
    app.router.add_get("/api/items/next", handlers.next_items)
    app.router.add_get("/api/items/{item_id}/image", handlers.image)
    app.router.add_get("/api/items/{item_id}/thumbnail", handlers.thumbnail)
    app.router.add_post("/api/annotations", handlers.add_annotation)
    app.router.add_delete("/api/annotations/{annotation_id}", handlers.undo_annotation)
    app.router.add_post("/api/labels/import", imports.import_labels)
    app.router.add_get("/api/export", handlers.export_labels)
    app.router.add_get("/api/guidelines", handlers.guidelines)
    app.router.add_get("/api/guidelines/examples/{index}", handlers.guideline_example)
    app.router.add_post("/api/classify", classify.classify)
    app.router.add_get("/api/predictions", predictions.export)
    app.router.add_get("/api/predictions/review", predictions.review)
    app.router.add_post("/api/predictions/job", predictions.start_job)
    app.router.add_get("/api/models", models.list_models)
    app.router.add_get("/api/models/{version}", models.download)
    app.router.add_post("/api/models/{version}/activate", models.activate)
    app.router.add_delete("/api/models/pin", models.unpin)
    tasks.add_routes(app)  # after every route it repeats under /t/<task>/
    app.router.add_static("/static/", Path(config.web_dir), append_version=False)
    for name, folder, what in VENDORED:
        path = Path(config.vendor_dir) / folder
        if path.is_dir():
            app.router.add_static(f"/vendor/{name}/", path)
        else:
            log.warning("a vendored npm package is missing (run make install): %s", what,
                        extra={"path": str(path)})
    return app
