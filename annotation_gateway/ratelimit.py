"""Rate limits on sign-ins and leases: past the limit a request is answered 429 with
Retry-After, the seconds until the moving window has room again.

The counting is the `limits` library's moving window, in this process's memory: each
gateway replica counts its own requests (so the limit a team meets is the per-process one
times the replicas serving it). Entries leave memory when their window has passed, so a
flood of distinct keys (client addresses) cannot grow it for good.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

from aiohttp import web
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from annotation_gateway.config import OFF
from annotation_gateway.errors import ApiError
from annotation_gateway.identity import Handler


class RateLimit:
    def __init__(self, spec: str, what: str) -> None:
        """`spec` as "30/minute" (Config checked it), or "off"."""
        self.what = what
        self.item: RateLimitItem | None = (
            None if spec.strip().lower() in OFF else parse(spec.strip().replace("/", " per ")))
        self._limiter = MovingWindowRateLimiter(MemoryStorage()) if self.item else None

    def hit(self, key: str) -> None:
        """Counts one request for `key`; raises the 429 when it is one too many."""
        if self.item is None or self._limiter is None:
            return
        if self._limiter.hit(self.item, self.what, key):
            return
        stats = self._limiter.get_window_stats(self.item, self.what, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise ApiError(429, "too_many_requests",
                       f"too many {self.what}; try again in {retry_after} s",
                       headers={"Retry-After": str(retry_after)})


def client_address(request: web.Request) -> str:
    # The peer's address: behind a proxy that is the proxy's, shared by its clients.
    return request.remote or "unknown"


def limited(key: web.AppKey[RateLimit],
            by: Callable[[web.Request], str]) -> Callable[[Handler], Handler]:
    """Decorates a handler: each call counts against the app's `key` limit, per `by`."""
    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            request.app[key].hit(by(request))
            return await handler(request)
        return checked
    return decorate


LOGINS = web.AppKey("login_limit", RateLimit)
LEASES = web.AppKey("lease_limit", RateLimit)
