"""Client channels: retries on UNAVAILABLE and load balancing are declared in the
service config (no hand-written retry loops), every call gets a deadline, and the
current request id and the caller's token travel in the metadata. With a CA the channel
speaks TLS (and with a client certificate, mutual TLS)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, TypeVar

import grpc
from grpc.aio import ClientCallDetails

from hitl.auth import AUTHORIZATION_KEY
from hitl.config import ConfigError
from hitl.grpc_server import message_size_options
from hitl.logs import REQUEST_ID_KEY, new_request_id, request_id

DEFAULT_DEADLINE_S = 10.0
# gRPC re-resolves a dns:/// target when a connection goes away (a replica stops, or a
# server ends a connection at its maximum age); its own default waits at least 30 s
# between resolutions, longer than a new replica should stay unknown.
MIN_RESOLUTION_INTERVAL_MS = 5_000


@dataclass(frozen=True)
class ClientSecurity:
    """What a client presents: its token, and for TLS the CA that signed the server's
    certificate, plus its own certificate and key for mutual TLS."""

    token: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.ca_file:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file),
            private_key=_read(self.key_file) if self.key_file else None,
            certificate_chain=_read(self.cert_file) if self.cert_file else None)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror or exc}") from None


# Targets whose channels are opened deep inside a service (the trainer's extraction loop)
# get their security here, registered once where the service is put together.
_REGISTERED: dict[str, ClientSecurity] = {}


def register(target: str, security: ClientSecurity) -> None:
    """Every later `open_channel(target)` without explicit security uses `security`."""
    _REGISTERED[target] = security


def service_config(*services: str, max_attempts: int = 4) -> str:
    """Round robin over every address the target resolves to (a headless Service in
    Kubernetes gives one per replica), and retries of UNAVAILABLE with backoff."""
    return json.dumps({
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [{
            "name": [{"service": s} for s in services],
            "retryPolicy": {
                "maxAttempts": max_attempts,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }],
    })


def _with_defaults(details: grpc.aio.ClientCallDetails, default_deadline_s: float,
                   token: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    if metadata.get(REQUEST_ID_KEY) is None:
        metadata.add(REQUEST_ID_KEY, request_id.get() or new_request_id())
    if token and metadata.get(AUTHORIZATION_KEY) is None:
        metadata.add(AUTHORIZATION_KEY, f"Bearer {token}")
    timeout = details.timeout if details.timeout is not None else default_deadline_s
    return grpc.aio.ClientCallDetails(details.method, timeout, metadata,
                                      details.credentials, details.wait_for_ready)


class _Defaults:
    """Adds the request id, the token and, where the caller set none, the default
    deadline. grpc.aio files an interceptor under the first call shape it implements, so
    each shape gets an instance of its own (one class for all four would see unary calls
    only)."""

    def __init__(self, default_deadline_s: float, token: str = "") -> None:
        self.deadline, self.token = default_deadline_s, token

    def details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return _with_defaults(details, self.deadline, self.token)


_Q = TypeVar("_Q")  # a call's request message
_R = TypeVar("_R")  # and its response message
_Requests: TypeAlias = AsyncIterable[_Q] | Iterable[_Q]


class _UnaryUnary(_Defaults, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
            self, continuation: Callable[[ClientCallDetails, _Q],
                                         Awaitable[grpc.aio.UnaryUnaryCall[_Q, _R]]],
            details: ClientCallDetails, request: _Q) -> grpc.aio.UnaryUnaryCall[_Q, _R]:
        return await continuation(self.details(details), request)


class _UnaryStream(_Defaults, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
            self, continuation: Callable[[ClientCallDetails, _Q],
                                         Awaitable[grpc.aio.UnaryStreamCall[_Q, _R]]],
            details: ClientCallDetails, request: _Q) -> grpc.aio.UnaryStreamCall[_Q, _R]:
        return await continuation(self.details(details), request)


class _StreamUnary(_Defaults, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
            self, continuation: Callable[[ClientCallDetails, _Requests[_Q]],
                                         Awaitable[grpc.aio.StreamUnaryCall[_Q, _R]]],
            details: ClientCallDetails, requests: _Requests[_Q],
    ) -> grpc.aio.StreamUnaryCall[_Q, _R]:
        return await continuation(self.details(details), requests)


class _StreamStream(_Defaults, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
            self, continuation: Callable[[ClientCallDetails, _Requests[_Q]],
                                         Awaitable[grpc.aio.StreamStreamCall[_Q, _R]]],
            details: ClientCallDetails, requests: _Requests[_Q],
    ) -> grpc.aio.StreamStreamCall[_Q, _R]:
        return await continuation(self.details(details), requests)


def open_channel(target: str, *services: str, max_message_bytes: int = 64 << 20,
                 default_deadline_s: float = DEFAULT_DEADLINE_S,
                 security: ClientSecurity | None = None) -> grpc.aio.Channel:
    """A grpc.aio channel to `target` (e.g. "dns:///features:50051"): plaintext, or TLS
    when `security` (else the one registered for `target`) names a CA."""
    security = security or _REGISTERED.get(target) or ClientSecurity()
    options = [
        ("grpc.service_config", service_config(*services)),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.dns_min_time_between_resolutions_ms", MIN_RESOLUTION_INTERVAL_MS),
        *message_size_options(max_message_bytes),
    ]
    interceptors: list[grpc.aio.ClientInterceptor] = [
        shape(default_deadline_s, security.token)
        for shape in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]
    credentials = security.credentials()
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=options,
                                       interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
