"""Simulated annotators over the gateway's HTTP API that behave like the browser page:
every label gets a client id once, waits in a local queue until the gateway acknowledges
it, and is re-sent with the same id after any failure (so that it counts exactly once)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from tests.reliability.stack import CSRF

RETRYABLE = {0, 408, 429, 500, 502, 503, 504}


@dataclass
class Tally:
    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    retries: int = 0
    # Answers that are neither success nor a retryable failure: each is a defect.
    refused: list[str] = field(default_factory=list)
    next_ms: list[float] = field(default_factory=list)
    annotate_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Annotator:
    def __init__(self, base: str, name: str, tally: Tally, think_s: float = 0.02) -> None:
        self.base, self.name, self.tally, self.think_s = base, name, tally, think_s
        self.queue: list[dict] = []
        self.rng = random.Random(name)

    async def _post(self, http: aiohttp.ClientSession, payload: dict) -> int:
        started = time.perf_counter()
        try:
            async with http.post("/api/annotations", json=payload, headers=CSRF) as r:
                body = await r.text()
                status = r.status
        except (TimeoutError, aiohttp.ClientError):
            status, body = 0, "connection failed"
        if status in (200, 201):
            self.tally.annotate_ms.append((time.perf_counter() - started) * 1e3)
        elif status not in RETRYABLE:
            self.tally.refused.append(f"{status} {body[:200]}")
        else:
            self.tally.error(f"annotate {status}")
        return status

    async def _deliver(self, http: aiohttp.ClientSession) -> bool:
        """Sends the oldest queued label; False when it must wait for a retry."""
        payload = self.queue[0]
        status = await self._post(http, payload)
        if status in (200, 201):
            self.tally.acknowledged.add(payload["id"])
            self.queue.pop(0)
            return True
        if status in RETRYABLE:
            self.tally.retries += 1
            return False
        self.queue.pop(0)  # refused: recorded as a defect above
        return True

    async def _lease(self, http: aiohttp.ClientSession, n: int) -> list[dict]:
        started = time.perf_counter()
        try:
            async with http.get("/api/items/next", params={"n": str(n)}) as r:
                body = await r.json(content_type=None)
                status = r.status
        except (TimeoutError, aiohttp.ClientError, ValueError):
            status, body = 0, {}
        if status != 200:
            self.tally.error(f"next {status}")
            if status not in RETRYABLE:
                self.tally.refused.append(f"next {status} {body}")
            return []
        self.tally.next_ms.append((time.perf_counter() - started) * 1e3)
        return list(body.get("items", []))

    async def run(self, active: Callable[[], bool], drain_s: float = 90.0,
                  batch: int = 5) -> None:
        """Leases and labels while `active()`, then delivers what is still queued."""
        timeout = aiohttp.ClientTimeout(total=15)
        jar = aiohttp.CookieJar(unsafe=True)  # keep cookies set by a bare IP address
        async with aiohttp.ClientSession(self.base, cookie_jar=jar, timeout=timeout) as http:
            while True:
                try:
                    async with http.post("/api/session", json={"annotator": self.name},
                                         headers=CSRF) as r:
                        if r.status == 200:
                            break
                except (TimeoutError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(0.2)
            backoff = 0.1
            while active():
                if self.queue:
                    if not await self._deliver(http):
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 1.0)
                        continue
                    backoff = 0.1
                    continue
                items = await self._lease(http, batch)
                if not items:
                    await asyncio.sleep(0.2)
                    continue
                for item in items:
                    payload = {"id": uuid.uuid4().hex, "item_id": item["id"],
                               "label": self.rng.choice(("positive", "negative")),
                               "duration_ms": self.rng.randint(300, 3000)}
                    self.tally.sent.add(payload["id"])
                    self.queue.append(payload)
                    if not await self._deliver(http):
                        break
                    await asyncio.sleep(self.think_s)
            # Time is up: what is still queued is delivered by retrying, as the page does.
            give_up = time.monotonic() + drain_s
            while self.queue and time.monotonic() < give_up:
                if not await self._deliver(http):
                    await asyncio.sleep(0.3)
