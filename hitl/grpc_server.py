"""The lifecycle every gRPC service shares: bind, report NOT_SERVING while warming up,
SERVING once ready, and on SIGTERM go NOT_SERVING again and drain within a grace period.

Health checking is always on and open to every caller; reflection is on unless switched
off. Every other call passes hitl.interceptors (callers, request id, log line, metrics);
hitl.security says how the port is exposed (TLS, limits on calls and connection age).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hitl.interceptors import CallInterceptor
from hitl.metrics import start_metrics_server
from hitl.security import ServerOptions

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def message_size_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)]


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
                 metrics_port: int | None = None,
                 options: ServerOptions | None = None) -> None:
        self.name = name
        self.service_names = tuple(service_names)
        self.grace_s = grace_s
        self._warm_up, self._close = warm_up, close
        self._metrics_port = metrics_port
        self.metrics_port: int | None = None
        self.options = options = options or ServerOptions()
        self.server = grpc.aio.server(
            interceptors=[CallInterceptor(options.access)],
            options=[*message_size_options(max_message_bytes), *options.grpc_options()],
            # Past the limit a call is answered RESOURCE_EXHAUSTED at once, not queued.
            maximum_concurrent_rpcs=options.max_concurrent_rpcs or None)
        add_servicers(self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if options.reflection:
            reflection.enable_server_reflection(
                (*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME),
                self.server)
        address = f"{options.host}:{port}"
        credentials = options.credentials()
        self.port = (self.server.add_secure_port(address, credentials) if credentials
                     else self.server.add_insecure_port(address))
        self.ready = asyncio.Event()
        self._warm_task: asyncio.Task[None] | None = None

    async def _set_health(self, status: int) -> None:
        for service in ("", *self.service_names):
            await self.health.set(service, status)

    async def start(self) -> None:
        """Binds and starts serving health at once; SERVING follows when warm-up ends."""
        await self._set_health(NOT_SERVING)
        await self.server.start()
        if self._metrics_port is not None:
            self.metrics_port = start_metrics_server(self._metrics_port,
                                                     self.options.metrics_host)
        log.info("listening", extra={"port": self.port, "metrics_port": self.metrics_port,
                                     "tls": bool(self.options.tls_cert),
                                     "mutual_tls": bool(self.options.tls_client_ca),
                                     "reflection": self.options.reflection})
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
