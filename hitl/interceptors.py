"""What every call to a service goes through before its servicer: authentication and
access (hitl.auth), the request id it carries, one JSON log line and one Prometheus
count per call, labelled with the caller, and a clear INVALID_ARGUMENT for request
bytes that do not parse. Health checking passes untouched: probes carry no token."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from hitl import auth
from hitl.logs import REQUEST_ID_KEY, caller_name, new_request_id, request_id
from hitl.metrics import RPCS, STARTED
from hitl.rpc_types import AnyContext

log = logging.getLogger("hitl.grpc_server")

OPEN_PREFIX = "/grpc.health."

# Every service's handlers pass through here, so their messages are any message.
# (A string: grpc's classes are generic only in their type stubs.)
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Deserializer: TypeAlias = Callable[[bytes], object]
# A servicer method as grpc.aio calls it: a coroutine function, or an async generator
# function when the response is streamed.
Behavior: TypeAlias = Callable[[Any, AnyContext], Any]
_MAKERS: dict[str, Callable[..., Handler]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


class _Undecodable:
    """Stands in for request bytes that do not parse, so that the call is answered
    INVALID_ARGUMENT (the library would answer UNKNOWN and log a stack trace)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserializer: Deserializer | None) -> Deserializer | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> object:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(exc)
    return parse


async def _refuse_undecodable(request: object, context: AnyContext) -> None:
    if isinstance(request, _Undecodable):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the request is not a valid message: {request.error}")


def _kind(handler: Handler) -> str:
    return ("stream" if handler.request_streaming else "unary") + "_" + (
        "stream" if handler.response_streaming else "unary")


def _rebuild(handler: Handler, behavior: Behavior,
             deserializer: Deserializer | None) -> Handler:
    return _MAKERS[_kind(handler)](behavior, request_deserializer=deserializer,
                                   response_serializer=handler.response_serializer)


class CallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, access: auth.Access) -> None:
        self.access = access

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
            details: grpc.HandlerCallDetails) -> Handler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIX):
            return handler
        caller, refusal = self.access.check(details.method, details.invocation_metadata)
        if refusal is not None:
            return _refusing(handler, details.method, caller, refusal)
        if details.method.startswith("/grpc."):  # reflection: checked, not logged
            return handler
        deserializer = (handler.request_deserializer if handler.request_streaming
                        else _lenient(handler.request_deserializer))
        return _rebuild(handler, _wrap(getattr(handler, _kind(handler)), details.method,
                                       caller), deserializer)


def _refusing(handler: Handler, method: str, caller: str,
              refusal: auth.Refusal) -> Handler:
    """A handler of the same shape that answers `refusal` without reading the request
    (its bytes are never parsed)."""
    code = refusal.code

    async def refuse(request: object, context: AnyContext) -> None:
        _adopt_request_id(context)
        caller_name.set(caller)
        log.warning("rpc refused", extra={"method": method, "code": code.name,
                                          "caller": caller})
        RPCS.labels(method, code.name, caller).inc()
        await context.abort(code, refusal.message)

    return _rebuild(handler, refuse, lambda _data: None)


def _adopt_request_id(context: AnyContext) -> None:
    metadata = dict(context.invocation_metadata() or ())
    request_id.set(str(metadata.get(REQUEST_ID_KEY) or new_request_id())[:64])


def _log_call(method: str, caller: str, context: AnyContext, started: float,
              error: BaseException | None) -> None:
    code = context.code() if hasattr(context, "code") else None
    if error is not None and not isinstance(error, (grpc.aio.AbortError, asyncio.CancelledError)):
        code = grpc.StatusCode.INTERNAL
    name = code.name if isinstance(code, grpc.StatusCode) else "OK"
    RPCS.labels(method, name, caller).inc()
    level = logging.WARNING if name in ("INTERNAL", "UNKNOWN", "DATA_LOSS") else logging.INFO
    log.log(level, "rpc", extra={"method": method, "code": name, "caller": caller,
                                 "duration_ms": round((time.perf_counter() - started) * 1e3, 2)})


@contextlib.contextmanager
def _observed(method: str, caller: str, context: AnyContext) -> Iterator[None]:
    """One call's request id, caller, log line and count, however it ends."""
    _adopt_request_id(context)
    caller_name.set(caller)
    STARTED.labels(method, caller).inc()
    started, error = time.perf_counter(), None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        _log_call(method, caller, context, started, error)


def _wrap(behavior: Behavior, method: str, caller: str) -> Behavior:
    if inspect.isasyncgenfunction(behavior):
        async def stream(request: object, context: AnyContext) -> AsyncIterator[object]:
            with _observed(method, caller, context):
                await _refuse_undecodable(request, context)
                async for response in behavior(request, context):
                    yield response
        return stream

    async def call(request: object, context: AnyContext) -> object:
        with _observed(method, caller, context):
            await _refuse_undecodable(request, context)
            return await behavior(request, context)
    return call
