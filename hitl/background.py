"""Debounced background work: a recomputation that many events ask for, run soon after
the first of them and never twice at once.

`schedule()` asks for a run. Requests while one waits cost nothing more; a request while
one runs asks for one more run after it, so a change that arrives mid-way is never
missed. `pace` keeps a costly pass from taking over a core: after a pass that took t
seconds, the next starts no sooner than pace * t after the first one began. A failed pass
is logged with its traceback, and the next request tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


class Debounced:
    def __init__(self, work: Callable[[], Awaitable[None]], *, name: str, failure: str,
                 log: logging.Logger, delay_s: float = 0.0, pace: float = 0.0) -> None:
        self.work, self.name, self.failure, self.log = work, name, failure, log
        self.delay_s, self.pace = delay_s, pace
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._next_at = 0.0  # loop time before which no pass starts

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def schedule(self, delay_s: float | None = None) -> None:
        """A run `delay_s` from now (the default delay if None), unless one is already
        waiting; during a run, one more run after it."""
        self._again = True
        if not self.busy:
            wait = self.delay_s if delay_s is None else delay_s
            self._task = asyncio.create_task(self._run(wait), name=self.name)

    async def _run(self, wait: float) -> None:
        loop = asyncio.get_running_loop()
        while self._again:
            await asyncio.sleep(max(wait, self._next_at - loop.time()))
            self._again = False
            started = loop.time()
            try:
                await self.work()
            except Exception:
                self.log.exception(self.failure)
            self._next_at = started + self.pace * (loop.time() - started)
            wait = self.delay_s

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
