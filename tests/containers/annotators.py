"""Annotators over the containerized gateway's HTTP API, signed in with their tokens as a
person is on the sign-in page. Each answers with the truth and delivers its labels the
way the page does: every label gets an id once and is re-sent with it after any failure
until the gateway acknowledges it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.containers.pods import CSRF

RETRYABLE = {0, 408, 429, 500, 502, 503, 504}


@dataclass
class Annotator:
    url: str
    token: str
    truth: dict[str, int]
    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)  # answers that are neither: defects
    retries: int = 0

    async def _signed_in(self) -> aiohttp.ClientSession:
        http = aiohttp.ClientSession(self.url, timeout=aiohttp.ClientTimeout(total=20),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with http.post("/api/login", json={"token": self.token}, headers=CSRF) as r:
            if r.status != 200:
                await http.close()
                raise AssertionError(f"sign-in refused: {r.status} {await r.text()}")
        return http

    async def _send(self, http: aiohttp.ClientSession, payload: dict[str, object]) -> int:
        try:
            async with http.post("/api/annotations", json=payload, headers=CSRF) as r:
                status, body = r.status, await r.text()
        except (TimeoutError, aiohttp.ClientError):
            status, body = 0, "connection failed"
        if status in (200, 201):
            self.acknowledged.add(str(payload["id"]))
        elif status in RETRYABLE:
            self.retries += 1
        else:
            self.refused.append(f"{status} {body[:200]}")
        return status

    async def _lease(self, http: aiohttp.ClientSession) -> list[str]:
        try:
            async with http.get("/api/items/next", params={"n": "5"}) as r:
                if r.status == 200:
                    return [i["id"] for i in (await r.json())["items"]]
                if r.status not in RETRYABLE:
                    self.refused.append(f"next {r.status} {await r.text()}")
        except (TimeoutError, aiohttp.ClientError):
            pass
        return []

    async def label(self, count: int, timeout_s: float = 300.0) -> None:
        """Until `count` labels are acknowledged (every one sent is, in the end)."""
        deadline = time.monotonic() + timeout_s
        async with await self._signed_in() as http:
            while len(self.acknowledged) < count:
                assert time.monotonic() < deadline, f"{len(self.acknowledged)} of {count}"
                items = await self._lease(http)
                if not items:
                    await asyncio.sleep(0.2)
                    continue
                for item_id in items:
                    payload = {"id": uuid.uuid4().hex, "item_id": item_id,
                               "label": "positive" if self.truth[item_id] else "negative",
                               "duration_ms": 1200}
                    self.sent.add(str(payload["id"]))
                    while await self._send(http, payload) in RETRYABLE:
                        assert time.monotonic() < deadline, "a label was never acknowledged"
                        await asyncio.sleep(0.3)
                    if len(self.acknowledged) >= count:
                        break


@contextlib.asynccontextmanager
async def signed_in(url: str, token: str) -> AsyncIterator[aiohttp.ClientSession]:
    """One session for a run of calls (sign-ins are rate-limited)."""
    http = await Annotator(url, token, {})._signed_in()
    async with http:
        yield http


async def export_counts(http: aiohttp.ClientSession) -> Counter[str]:
    """How often each annotation id is in the labelled set (the gateway's JSONL export,
    as the admin downloads it, undone ones included)."""
    async with http.get("/api/export", params={"format": "jsonl",
                                               "include_undone": "true"}) as r:
        assert r.status == 200, await r.text()
        text = await r.text()
    return Counter(json.loads(line)["id"] for line in text.splitlines() if line)


async def status(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/api/status") as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())
