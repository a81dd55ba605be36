"""The lifecycle every gRPC service shares: bind, report NOT_SERVING while warming up,
SERVING once ready, and on SIGTERM go NOT_SERVING again and drain within a grace period.

Health checking and server reflection are always on, and every call is logged with the
request id it carries.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hitl.logs import REQUEST_ID_KEY, new_request_id, request_id
from hitl.metrics import start_metrics_server

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def message_size_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)]


class _Undecodable:
    """Stands in for request bytes that do not parse, so that the call is answered
    INVALID_ARGUMENT (the library would answer UNKNOWN and log a stack trace)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserializer: Callable | None) -> Callable | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> object:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(exc)
    return parse


async def _refuse_undecodable(request: object, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, _Undecodable):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the request is not a valid message: {request.error}")


class _RequestIdInterceptor(grpc.aio.ServerInterceptor):
    """Adopts the caller's request id (or makes one) and logs one line per call."""

    async def intercept_service(self, continuation, details):  # type: ignore[no-untyped-def]
        handler = await continuation(details)
        if handler is None or details.method.startswith("/grpc."):
            return handler
        kind = ("stream" if handler.request_streaming else "unary") + "_" + (
            "stream" if handler.response_streaming else "unary")
        behavior = getattr(handler, kind)
        wrapped = _wrap(behavior, details.method)
        make = getattr(grpc, f"{kind}_rpc_method_handler")
        deserializer = (handler.request_deserializer if handler.request_streaming
                        else _lenient(handler.request_deserializer))
        return make(wrapped, request_deserializer=deserializer,
                    response_serializer=handler.response_serializer)


def _adopt_request_id(context: grpc.aio.ServicerContext) -> None:
    metadata = dict(context.invocation_metadata() or ())
    request_id.set(str(metadata.get(REQUEST_ID_KEY) or new_request_id()))


def _log_call(method: str, context: grpc.aio.ServicerContext, started: float,
              error: BaseException | None) -> None:
    code = context.code() if hasattr(context, "code") else None
    if error is not None and not isinstance(error, (grpc.aio.AbortError, asyncio.CancelledError)):
        code = grpc.StatusCode.INTERNAL
    name = code.name if isinstance(code, grpc.StatusCode) else "OK"
    level = logging.WARNING if name in ("INTERNAL", "UNKNOWN", "DATA_LOSS") else logging.INFO
    log.log(level, "rpc", extra={"method": method, "code": name,
                                 "duration_ms": round((time.perf_counter() - started) * 1e3, 2)})


def _wrap(behavior: Callable, method: str) -> Callable:
    if inspect.isasyncgenfunction(behavior):
        async def stream(request, context):  # type: ignore[no-untyped-def]
            _adopt_request_id(context)
            started, error = time.perf_counter(), None
            try:
                await _refuse_undecodable(request, context)
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                _log_call(method, context, started, error)
        return stream

    async def call(request, context):  # type: ignore[no-untyped-def]
        _adopt_request_id(context)
        started, error = time.perf_counter(), None
        try:
            await _refuse_undecodable(request, context)
            return await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _log_call(method, context, started, error)
    return call


class GrpcService:
    """One grpc.aio server with health, reflection and a graceful stop.

    `add_servicers` registers the service's servicers; `warm_up` loads models or data
    and runs before health turns SERVING; `close` releases resources after the drain.
    """

    def __init__(self, *, name: str, service_names: Iterable[str], port: int,
                 grace_s: float, max_message_bytes: int,
                 add_servicers: Callable[[grpc.aio.Server], None],
                 warm_up: Callable[[], Awaitable[None]] | None = None,
                 close: Callable[[], Awaitable[None]] | None = None,
                 metrics_port: int | None = None, host: str = "[::]") -> None:
        self.name = name
        self.service_names = tuple(service_names)
        self.grace_s = grace_s
        self._warm_up, self._close = warm_up, close
        self._metrics_port = metrics_port
        self.metrics_port: int | None = None
        self.server = grpc.aio.server(interceptors=[_RequestIdInterceptor()],
                                      options=message_size_options(max_message_bytes))
        add_servicers(self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        self.ready = asyncio.Event()
        self._warm_task: asyncio.Task | None = None

    async def _set_health(self, status: int) -> None:
        for service in ("", *self.service_names):
            await self.health.set(service, status)

    async def start(self) -> None:
        """Binds and starts serving health at once; SERVING follows when warm-up ends."""
        await self._set_health(NOT_SERVING)
        await self.server.start()
        if self._metrics_port is not None:
            self.metrics_port = start_metrics_server(self._metrics_port)
        log.info("listening", extra={"port": self.port, "metrics_port": self.metrics_port})
        self._warm_task = asyncio.create_task(self._become_ready())

    async def _become_ready(self) -> None:
        started = time.perf_counter()
        if self._warm_up is not None:
            await self._warm_up()
        await self._set_health(SERVING)
        self.ready.set()
        log.info("serving", extra={"warm_up_s": round(time.perf_counter() - started, 3)})

    async def wait_ready(self) -> None:
        """Waits for warm-up; re-raises its error if it failed."""
        assert self._warm_task is not None, "start() first"
        await asyncio.shield(self._warm_task)

    async def stop(self, grace_s: float | None = None) -> None:
        """NOT_SERVING first (so balancers move away), then drain and close."""
        grace = self.grace_s if grace_s is None else grace_s
        log.info("stopping", extra={"grace_s": grace})
        if self._warm_task is not None and not self._warm_task.done():
            self._warm_task.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self._close is not None:
            await self._close()
        log.info("stopped")

    async def run_until_signal(self) -> None:
        """The main loop of `python -m <service>`: serve until SIGTERM or SIGINT."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        waiter = asyncio.create_task(stop.wait())
        assert self._warm_task is not None
        done, _ = await asyncio.wait({waiter, self._warm_task},
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._warm_task in done and self._warm_task.exception() is not None:
            log.error("warm-up failed", exc_info=self._warm_task.exception())
            await self.stop(0)
            raise SystemExit(1)
        await waiter
        await self.stop()
