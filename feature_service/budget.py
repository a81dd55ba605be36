"""Bounds on what callers hold at once, in all and per caller: bytes of requests being
worked on (so request bodies cannot pile up in memory), and open data-plane calls (so one
caller's idle streams cannot take every slot). Many small calls are fine (they are what
micro-batching feeds on); a few huge ones wait or are refused. Health, Describe and
reflection are never counted: they answer whatever the callers do."""

from __future__ import annotations

import asyncio
import collections


class RequestBytes:
    def __init__(self, limit: int, caller_limit: int | None = None) -> None:
        self.limit, self.used = limit, 0
        self.caller_limit = caller_limit or limit
        self.by_caller: collections.Counter[str] = collections.Counter()
        self._freed = asyncio.Condition()

    def refusal(self, caller: str, size: int) -> str | None:
        """Why `size` more bytes from `caller` do not fit now, or None. With nothing in
        progress a request fits: the gRPC message limit already bounds a single one."""
        if self.used and self.used + size > self.limit:
            return (f"{self.used} bytes of requests in progress; {size} more would pass "
                    f"{self.limit} (FEATURE_MAX_INFLIGHT_BYTES): retry with backoff")
        own = self.by_caller[caller]
        if own and own + size > self.caller_limit:
            return (f"this caller has {own} bytes of requests in progress; {size} more would "
                    f"pass {self.caller_limit} (FEATURE_CALLER_MAX_BYTES): retry with backoff")
        return None

    def try_take(self, caller: str, size: int) -> str | None:
        """Takes `size` bytes for `caller` if they fit; else says why not."""
        why = self.refusal(caller, size)
        if why is None:
            self.used += size
            self.by_caller[caller] += size
        return why

    async def take(self, caller: str, size: int) -> None:
        """Waits until `size` bytes fit, then takes them."""
        async with self._freed:
            await self._freed.wait_for(lambda: self.try_take(caller, size) is None)

    async def give(self, caller: str, size: int) -> None:
        self.used -= size
        self.by_caller[caller] -= size
        if not self.by_caller[caller]:
            del self.by_caller[caller]
        async with self._freed:
            self._freed.notify_all()


class OpenCalls:
    """Embed, EmbedStream and Lookup calls open now, in all and per caller (0: no bound)."""

    def __init__(self, limit: int, caller_limit: int) -> None:
        self.limit, self.caller_limit = limit, caller_limit
        self.open = 0
        self.by_caller: collections.Counter[str] = collections.Counter()

    def enter(self, caller: str) -> str | None:
        """Counts the call in; or says why it is refused."""
        if self.caller_limit and self.by_caller[caller] >= self.caller_limit:
            return (f"this caller has {self.by_caller[caller]} calls open, the most one caller "
                    "may (FEATURE_CALLER_MAX_CALLS): finish or close some first")
        if self.limit and self.open >= self.limit:
            return (f"{self.open} calls open, the most this service takes "
                    "(FEATURE_MAX_CONCURRENT_RPCS): retry with backoff")
        self.open += 1
        self.by_caller[caller] += 1
        return None

    def leave(self, caller: str) -> None:
        self.open -= 1
        self.by_caller[caller] -= 1
        if not self.by_caller[caller]:
            del self.by_caller[caller]
