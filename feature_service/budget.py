"""A bound on the bytes of requests being worked on at once, so that request bodies
cannot pile up in memory however many callers there are. Many small calls are fine (they
are what micro-batching feeds on); a few huge ones wait or are refused."""

from __future__ import annotations

import asyncio


class RequestBytes:
    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._freed = asyncio.Condition()

    def try_take(self, size: int) -> bool:
        """Takes `size` bytes if they fit. With nothing in progress any request fits:
        the gRPC message limit already bounds a single one."""
        if self.used and self.used + size > self.limit:
            return False
        self.used += size
        return True

    async def take(self, size: int) -> None:
        """Waits until `size` bytes fit, then takes them."""
        async with self._freed:
            await self._freed.wait_for(lambda: self.try_take(size))

    async def give(self, size: int) -> None:
        self.used -= size
        async with self._freed:
            self._freed.notify_all()
