"""One WatchStatus stream from the trainer per task and gateway process, fanned out to
every browser on that task over Server-Sent Events. Subscribers only ever need the newest
status, so each one waits for a newer version and sends the latest snapshot (slow clients
skip states instead of queueing them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import grpc
from aiohttp import web

from annotation_gateway import convert
from annotation_gateway.metrics import LIVE_CLIENTS, TRAINER_WATCH_UP
from hitl.v1 import trainer_pb2, trainer_pb2_grpc

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 5.0
# A watch is a long call; it is renewed at this deadline rather than left without one.
WATCH_DEADLINE_S = 3600.0
CLIENT_RETRY_MS = 2000


class StatusHub:
    def __init__(self, trainer: trainer_pb2_grpc.TrainerServiceAsyncStub, task: str = "") -> None:
        self.trainer, self.task = trainer, task
        self.trainer_state = "connecting"
        self.status: dict[str, Any] | None = None
        self.version = 0
        self.closing = False
        self._changed = asyncio.Condition()

    def snapshot(self) -> dict[str, Any]:
        return {"trainer": self.trainer_state, "status": self.status}

    async def _publish(self, **changes: Any) -> None:
        async with self._changed:
            for key, value in changes.items():
                setattr(self, key, value)
            self.version += 1
            self._changed.notify_all()

    async def wait_newer(self, seen: int, timeout: float) -> int:
        """The current version once it is newer than `seen`, or `seen` after `timeout`."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version > seen or self.closing),
                    timeout)
            return self.version

    async def close(self) -> None:
        await self._publish(closing=True)

    async def run(self) -> None:
        backoff = RECONNECT_MIN_S
        while not self.closing:
            try:
                call = self.trainer.WatchStatus(trainer_pb2.WatchStatusRequest(task=self.task),
                                                timeout=WATCH_DEADLINE_S)
                async for response in call:
                    TRAINER_WATCH_UP.set(1)
                    backoff = RECONNECT_MIN_S
                    await self._publish(trainer_state="up",
                                        status=convert.status(response.status))
            except grpc.aio.AioRpcError as exc:
                # Logged once per outage, not at every reconnection attempt.
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED and self.trainer_state != "down":
                    log.warning("trainer status stream lost", extra={"code": exc.code().name})
            TRAINER_WATCH_UP.set(0)
            if self.closing:
                break
            if self.trainer_state != "down":
                await self._publish(trainer_state="down")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)


class StatusHubs:
    """A hub per task, each started when a page on that task first asks for it (the
    default task's, named "", at once). Only tasks the trainer lists are asked for, so
    their number is bounded by the tasks there are."""

    def __init__(self, trainer: trainer_pb2_grpc.TrainerServiceAsyncStub) -> None:
        self.trainer = trainer
        self.hubs: dict[str, StatusHub] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        self.hub("")

    def hub(self, task: str) -> StatusHub:
        hub = self.hubs.get(task)
        if hub is None:
            hub = self.hubs[task] = StatusHub(self.trainer, task)
            self._runs[task] = asyncio.create_task(hub.run(), name=f"status-{task}")
        return hub

    async def close(self) -> None:
        for hub in list(self.hubs.values()):
            await hub.close()
        for run in self._runs.values():
            run.cancel()
        await asyncio.gather(*self._runs.values(), return_exceptions=True)


def _event(name: str, data: dict[str, Any], event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data)}\n\n".encode()


View = Callable[[dict[str, Any] | None], dict[str, Any] | None]


def _viewed(hub: StatusHub, view: View) -> dict[str, Any]:
    snapshot = hub.snapshot()
    return {**snapshot, "status": view(snapshot["status"])}


async def stream_status(request: web.Request, hub: StatusHub,
                        view: View = lambda status: status) -> web.StreamResponse:
    """The hub's status as this client may see it (`view`), now and at every change."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    LIVE_CLIENTS.inc()
    try:
        await response.write(f"retry: {CLIENT_RETRY_MS}\n\n".encode())
        seen = hub.version
        await response.write(_event("status", _viewed(hub, view), seen))
        while not hub.closing:
            version = await hub.wait_newer(seen, HEARTBEAT_S)
            if hub.closing:
                break
            if version == seen:
                await response.write(b": keep-alive\n\n")
                continue
            seen = version
            await response.write(_event("status", _viewed(hub, view), seen))
    except ConnectionResetError:
        pass
    finally:
        LIVE_CLIENTS.dec()
    return response
