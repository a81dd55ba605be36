"""An in-process gateway (init_app) behind aiohttp's test client."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from annotation_gateway.config import Config
from annotation_gateway.server import init_app
from tests.reliability.stack import TOKENS

CSRF = {"X-Requested-With": "test"}


def config(**overrides: Any) -> Config:
    # The gateway's token: the session's shared feature service knows its callers.
    base = Config(port=8080, metrics_port=0, trainer_addr="127.0.0.1:1",
                  feature_addr="127.0.0.1:1", rpc_deadline_s=3.0,
                  grpc_token=TOKENS["gateway"])
    return dataclasses.replace(base, **overrides)


@contextlib.asynccontextmanager
async def client(cfg: Config) -> AsyncIterator[TestClient]:
    # unsafe: keep cookies set for the bare 127.0.0.1 the test server listens on
    test_client = TestClient(TestServer(init_app(cfg)), cookie_jar=aiohttp.CookieJar(unsafe=True))
    await test_client.start_server()
    try:
        yield test_client
    finally:
        await test_client.close()


async def sign_in(c: TestClient, name: str = "tester") -> None:
    r = await c.post("/api/session", json={"annotator": name}, headers=CSRF)
    assert r.status == 200, await r.text()


async def error_of(response: aiohttp.ClientResponse) -> dict[str, str]:
    assert response.content_type == "application/json"
    body = await response.json()
    return dict(body["error"])
