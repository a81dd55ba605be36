"""Rate limits on sign-ins, leases and classify requests: past the limit a request is
answered 429 with Retry-After, the seconds until the moving window has room again.

The counting is a moving window per key in this process's memory: each gateway replica
counts its own requests (so the limit a team meets is the per-process one times the
replicas serving it). Keys whose window has passed are dropped once per window, so a flood
of distinct keys (client addresses) cannot grow it for good. The `limits` library parses
the spec; its in-memory storage is not used because it starts a timer thread at each
counted request, on the event loop every annotator's request waits on (under load each
start waited for a scheduler slice: about a second of the loop's time a minute in
`python -m bench.floods`).
"""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web
from limits import parse

from annotation_gateway.config import OFF
from annotation_gateway.errors import ApiError
from annotation_gateway.identity import Handler, identity_of


class MovingWindow:
    """At most `amount` counted hits per key in any `seconds`; a refused hit is not
    counted (a client refused and retrying at once is not pushed further back)."""

    def __init__(self, amount: int, seconds: float) -> None:
        self.amount, self.seconds = amount, seconds
        self._hits: dict[str, deque[float]] = {}
        self._sweep_at = 0.0

    def hit(self, key: str, now: float) -> float:
        """0 when the hit is counted, else the seconds until the window has room."""
        if now >= self._sweep_at:  # drop the keys whose window has passed
            self._sweep_at = now + self.seconds
            self._hits = {k: w for k, w in self._hits.items() if w[-1] > now - self.seconds}
        window = self._hits.setdefault(key, deque())
        while window and window[0] <= now - self.seconds:
            window.popleft()
        if len(window) >= self.amount:
            return window[0] + self.seconds - now
        window.append(now)
        return 0.0

    def __len__(self) -> int:
        return len(self._hits)


class RateLimit:
    def __init__(self, spec: str, what: str) -> None:
        """`spec` as "30/minute" (Config checked it), or "off"."""
        self.what = what
        self.window: MovingWindow | None = None
        if spec.strip().lower() not in OFF:
            item = parse(spec.strip().replace("/", " per "))
            self.window = MovingWindow(item.amount, item.get_expiry())

    def hit(self, key: str) -> None:
        """Counts one request for `key`; raises the 429 when it is one too many."""
        if self.window is None:
            return
        wait = self.window.hit(key, time.monotonic())
        if wait <= 0:
            return
        retry_after = max(1, math.ceil(wait))
        raise ApiError(429, "too_many_requests",
                       f"too many {self.what}; try again in {retry_after} s",
                       headers={"Retry-After": str(retry_after)})


def client_address(request: web.Request) -> str:
    # The peer's address: behind a proxy that is the proxy's, shared by its clients.
    return request.remote or "unknown"


def caller_key(request: web.Request) -> str:
    """Whom a per-caller limit counts: the signed-in annotator, else the client address."""
    identity = identity_of(request)
    return f"annotator:{identity.name}" if identity else f"address:{client_address(request)}"


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
