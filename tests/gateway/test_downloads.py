"""The streamed download both exports use: whole when the trainer's stream ends, cut
(never silently short) when it fails after the answer has started."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from annotation_gateway import downloads


def failure() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                grpc.aio.Metadata(), details="trainer went away")


async def pieces(fail_after: int | None) -> AsyncIterator[str]:
    for k in range(3):
        if fail_after is not None and k == fail_after:
            raise failure()
        yield f"row {k}\n" * 20000  # far past any buffer, so the cut happens mid-body


async def client(fail_after: int | None) -> TestClient:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await downloads.stream(request, {"Content-Type": "text/csv"}, "header\n",
                                      pieces(fail_after), "test export")
    app = web.Application()
    app.router.add_get("/", handler)
    c = TestClient(TestServer(app))
    await c.start_server()
    return c


async def test_the_whole_stream_is_sent_with_its_head() -> None:
    c = await client(None)
    try:
        r = await c.get("/")
        body = await r.text()
        assert r.status == 200 and r.headers["Content-Type"] == "text/csv"
        assert body.startswith("header\n") and body.count("\n") == 1 + 3 * 20000
    finally:
        await c.close()


async def test_a_failure_mid_way_cuts_the_connection() -> None:
    c = await client(1)
    try:
        r = await c.get("/")
        assert r.status == 200  # already answered when the trainer failed
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    finally:
        await c.close()
