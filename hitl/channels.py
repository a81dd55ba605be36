"""Client channels: retries on UNAVAILABLE and load balancing are declared in the
service config (no hand-written retry loops), every call gets a deadline, and the
current request id travels in the metadata."""

from __future__ import annotations

import json

import grpc

from hitl.grpc_server import message_size_options
from hitl.logs import REQUEST_ID_KEY, new_request_id, request_id

DEFAULT_DEADLINE_S = 10.0


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


def _with_defaults(details: grpc.aio.ClientCallDetails,
                   default_deadline_s: float) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    if REQUEST_ID_KEY not in metadata:
        metadata.add(REQUEST_ID_KEY, request_id.get() or new_request_id())
    timeout = details.timeout if details.timeout is not None else default_deadline_s
    return grpc.aio.ClientCallDetails(details.method, timeout, metadata,
                                      details.credentials, details.wait_for_ready)


class _Defaults(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor,
                grpc.aio.StreamUnaryClientInterceptor, grpc.aio.StreamStreamClientInterceptor):
    """Adds the request id and, where the caller set none, the default deadline."""

    def __init__(self, default_deadline_s: float) -> None:
        self.deadline = default_deadline_s

    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(_with_defaults(details, self.deadline), request)

    async def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(_with_defaults(details, self.deadline), request)

    async def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return await continuation(_with_defaults(details, self.deadline), requests)

    async def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return await continuation(_with_defaults(details, self.deadline), requests)


def open_channel(target: str, *services: str, max_message_bytes: int = 64 << 20,
                 default_deadline_s: float = DEFAULT_DEADLINE_S) -> grpc.aio.Channel:
    """An insecure grpc.aio channel to `target` (e.g. "dns:///features:50051")."""
    options = [
        ("grpc.service_config", service_config(*services)),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
        *message_size_options(max_message_bytes),
    ]
    return grpc.aio.insecure_channel(target, options=options,
                                     interceptors=[_Defaults(default_deadline_s)])
