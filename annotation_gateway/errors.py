"""gRPC status codes as HTTP statuses, always with a JSON error body."""

from __future__ import annotations

import json

import grpc
from aiohttp import web

from hitl.redact import without_addresses

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# Messages from these codes describe the caller's request and are safe to pass on;
# others may carry internals, so the browser gets a generic sentence instead.
_CLIENT_FACING = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
                  grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
                  grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED,
                  grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.PERMISSION_DENIED}
_GENERIC = {
    grpc.StatusCode.UNAVAILABLE: "the service is unavailable; try again shortly",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the service took too long to answer",
}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json",
                        headers=headers)


class ApiError(Exception):
    """Raised by handlers; the error middleware turns it into a JSON error response."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.headers)


def from_rpc_error(exc: grpc.aio.AioRpcError, service: str) -> web.Response:
    return rpc_api_error(exc, service).response()


def rpc_api_error(exc: grpc.aio.AioRpcError, service: str) -> ApiError:
    """A failed call to `service` as the error the browser gets."""
    code = exc.code()
    status = HTTP_STATUS.get(code, 502)
    if code in _CLIENT_FACING:
        message = without_addresses(exc.details() or code.name.lower())
    else:
        message = _GENERIC.get(code, f"the {service} service failed")
    return ApiError(status, code.name.lower(), message)
