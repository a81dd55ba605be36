"""Fixtures: a real feature service in-process on a real port (with TinyExtractor and a
real LMDB cache on disk), and a local image server on 127.0.0.1 playing every kind of
well- and ill-behaved web server."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from feature_service.config import Config
from feature_service.server import SERVICE_NAME, build_service
from hitl.channels import open_channel
from hitl.grpc_server import GrpcService
from hitl.v1 import feature_pb2_grpc
from tests.feature.helpers import HTML, TinyExtractor, encode, gradient


class ImageServer:
    """aiohttp on 127.0.0.1: /img/<name> serves `images`, plus misbehaving routes."""

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {"a.png": encode(gradient(seed=1), "PNG"),
                                         "b.jpg": encode(gradient(seed=2), "JPEG")}
        self.hits: dict[str, int] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/img/{name}", self._image)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/html", self._html)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/drip", self._drip)
        app.router.add_get("/endless", self._endless)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                    shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _count(self, request: web.Request) -> None:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1

    async def _image(self, request: web.Request) -> web.Response:
        self._count(request)
        data = self.images.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="image/jpeg")

    async def _status(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.Response(status=int(request.match_info["code"]), text="no")

    async def _html(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.Response(body=HTML, content_type="image/jpeg")

    async def _redirect(self, request: web.Request) -> web.Response:
        self._count(request)
        raise web.HTTPFound(request.query["to"])

    async def _slow(self, request: web.Request) -> web.Response:
        self._count(request)
        await asyncio.sleep(30)
        return web.Response(body=b"late")

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        await response.prepare(request)
        for _ in range(300):
            await response.write(b"\xff")
            await asyncio.sleep(0.1)
        return response

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        await response.prepare(request)
        chunk = b"\0" * 65536
        try:
            while True:
                await response.write(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response


@pytest.fixture
async def image_server() -> AsyncIterator[ImageServer]:
    server = ImageServer()
    await server.start()
    yield server
    await server.stop()


def test_config(tmp_path: Path, **overrides: object) -> Config:
    base = Config(port=0, metrics_port=0, extractor="lite", device="cpu",
                  cache_dir=str(tmp_path / "cache"), cache_map_bytes=1 << 22,
                  url_allowlist=("127.0.0.1",), max_image_bytes=1 << 20,
                  max_pixels=4_000_000, connect_timeout_s=1.0, read_timeout_s=1.5,
                  max_redirects=3, max_items=128, max_batch=16, max_wait_ms=20.0,
                  grace_s=1.0, calibration_s=0.0)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


class Running:
    def __init__(self, service: GrpcService, extractor: TinyExtractor) -> None:
        self.service, self.extractor = service, extractor
        self.channel = open_channel(f"127.0.0.1:{service.port}", SERVICE_NAME)
        self.stub = feature_pb2_grpc.FeatureServiceStub(self.channel)


@pytest.fixture
async def service_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Starts in-process services (TinyExtractor, LMDB under tmp_path); stops them all."""
    started: list[Running] = []

    async def start(extractor: TinyExtractor | None = None, **overrides: object) -> Running:
        extractor = extractor or TinyExtractor()
        service = build_service(test_config(tmp_path, **overrides), extractor)
        await service.start()
        await service.wait_ready()
        running = Running(service, extractor)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.channel.close()
        await running.service.stop(0)


@pytest.fixture
async def feature(service_factory) -> Running:  # type: ignore[no-untyped-def]
    return await service_factory(TinyExtractor(delay_s=0.01))
