"""Fair micro-batching: images from concurrent callers share model calls, and every
caller gets its turn.

Each caller has its own queue. A batch is filled round robin across the callers with
images waiting (a caller of weight w gives up to w images per turn, FEATURE_CALLER_WEIGHTS),
so one caller's backlog never makes another wait for all of it; the trainer is a caller
like any other. A batch closes when it holds `max_batch` images, or `max_wait_s` after
its oldest image arrived, and goes to one of `slots` places with the workers (a worker
process holds its next batch while it runs one); fewer images than would fill every
worker running at once (`parallel`) are spread over them rather than all given to one. A
large image (over LARGE_PIXELS) runs alone, and large images never hold the last of the
workers (nor does a small batch wait behind one: feature_service/workers.py), so a small
image always finds a worker within the time of one or two small batches.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from feature_service import metrics
from feature_service.outcomes import ItemFailure, Kind

log = logging.getLogger(__name__)

# Past this many pixels an image's decoding alone takes a worker for a while (a 1,000 x
# 1,000 photo); street tiles and web thumbnails are far below it.
LARGE_PIXELS = 1_000_000

# A batch's payloads, and whether it is a large image (alone) -> an outcome each.
RunBatch = Callable[[list[object], bool], Awaitable[list[object]]]


@dataclass
class _Item:
    payload: object
    large: bool
    arrived: float
    future: asyncio.Future[object]


class FairBatcher:
    def __init__(self, run: RunBatch, *, slots: int, max_batch: int, max_wait_s: float,
                 weights: Mapping[str, int] | None = None, model_batches: bool = True,
                 parallel: int | None = None) -> None:
        """`slots` batches may be given out at once, of which `parallel` (default: all)
        run at the same time: a worker process holds its next batch while it runs one."""
        self._run_batch, self.slots = run, slots
        self.parallel = parallel or slots
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self._weights = dict(weights or {})
        self._model_batches = model_batches  # counted in feature_batch_size
        self._queues: dict[str, collections.deque[_Item]] = {}
        self._turn: collections.deque[str] = collections.deque()  # callers waiting, in order
        self.waiting = 0
        self._free, self._large_running = slots, 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="fair-batcher")

    async def submit(self, payload: object, caller: str, large: bool = False) -> object:
        """`payload`'s outcome, computed within some batch; raises what the batch raised."""
        if self._task is None:
            raise ItemFailure(Kind.INTERNAL, "the service is still warming up")
        loop = asyncio.get_running_loop()
        item = _Item(payload, large, loop.time(), loop.create_future())
        queue = self._queues.get(caller)
        if queue is None:
            queue = self._queues[caller] = collections.deque()
            self._turn.append(caller)
        queue.append(item)
        self.waiting += 1
        self._wake.set()
        return await item.future

    def _large_allowed(self) -> bool:
        return self._large_running < max(1, self.parallel - 1)

    def _take(self, size: int) -> list[_Item]:
        """Up to `size` items, round robin across callers; a large item alone."""
        batch: list[_Item] = []
        progressed = True
        while len(batch) < size and progressed and self._turn:
            progressed = False
            for _ in range(len(self._turn)):
                caller = self._turn.popleft()
                queue = self._queues[caller]
                taken = 0
                while queue and taken < self._weights.get(caller, 1) and len(batch) < size:
                    head = queue[0]
                    if head.future.done():  # its caller went away
                        queue.popleft()
                        self.waiting -= 1
                        continue
                    if head.large and (batch or not self._large_allowed()):
                        break
                    queue.popleft()
                    self.waiting -= 1
                    batch.append(head)
                    taken += 1
                    if head.large:
                        size = 1
                if queue:
                    self._turn.append(caller)
                else:
                    del self._queues[caller]
                progressed = progressed or taken > 0
                if len(batch) >= size:
                    break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if self.waiting and self._free:
                oldest = min(q[0].arrived for q in self._queues.values() if q)
                left = oldest + self.max_wait_s - loop.time()
                if self.waiting < self.max_batch and left > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), left)
                    continue
                # Spread over all the workers, not only those free now: a worker that
                # frees up soon takes its part, rather than one taking everything.
                batch = self._take(min(self.max_batch, -(-self.waiting // self.parallel)))
                if batch:
                    self._dispatch(batch)
                    continue
            await self._wake.wait()

    def _dispatch(self, batch: list[_Item]) -> None:
        self._free -= 1
        large = batch[0].large
        self._large_running += large
        task = asyncio.create_task(self._complete(batch, large))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _complete(self, batch: list[_Item], large: bool) -> None:
        if self._model_batches:
            metrics.BATCH_SIZE.observe(len(batch))
        try:
            outcomes = await self._run_batch([item.payload for item in batch], large)
        except Exception as exc:
            error = exc if isinstance(exc, ItemFailure) else ItemFailure(
                Kind.INTERNAL, f"the batch failed: {type(exc).__name__}")
            if not isinstance(exc, ItemFailure):
                log.error("a batch failed", extra={"error": str(exc), "images": len(batch)})
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
        else:
            for item, outcome in zip(batch, outcomes, strict=True):
                if not item.future.done():
                    item.future.set_result(outcome)
        finally:
            self._free += 1
            self._large_running -= large
            self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._running):
            task.cancel()
        stopping = ItemFailure(Kind.INTERNAL, "the service is stopping")
        for queue in self._queues.values():
            for item in queue:
                if not item.future.done():
                    item.future.set_exception(stopping)
        self._queues.clear()
        self._turn.clear()
        self.waiting = 0
