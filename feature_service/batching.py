"""Micro-batching: images from concurrent callers share one model call.

A batch closes when it holds `max_batch` images or `max_wait_s` after its first image
arrived. Inference runs on one dedicated thread (under torch.inference_mode() for the
extractors that run on torch), so the event loop keeps accepting, fetching and decoding
the next images meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from feature_service import metrics
from feature_service.extractors.base import Extractor
from feature_service.outcomes import ItemFailure, Kind

log = logging.getLogger(__name__)


def inference_mode() -> contextlib.AbstractContextManager[object]:
    """torch's inference mode where the extractor runs on torch (its module has imported
    it); the lite extractor runs on ONNX Runtime, and its image carries no torch."""
    torch = sys.modules.get("torch")
    return torch.inference_mode() if torch is not None else contextlib.nullcontext()


class MicroBatcher:
    def __init__(self, extractor: Extractor, max_batch: int, max_wait_s: float) -> None:
        self.extractor = extractor
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self._queue: asyncio.Queue[tuple[object, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Warms the models up on the inference thread, then starts batching."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._warm_up)
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    def _warm_up(self) -> None:
        with inference_mode():
            self.extractor.warm_up()

    async def submit(self, prepared: object) -> np.ndarray:
        """The feature vector of one prepared image, computed within some batch."""
        if self._task is None:
            raise ItemFailure(Kind.INTERNAL, "the service is still warming up")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((prepared, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[tuple[object, asyncio.Future[np.ndarray]]]) -> None:
        live = [(p, f) for p, f in batch if not f.done()]  # callers may have gone
        if not live:
            return
        loop = asyncio.get_running_loop()
        metrics.BATCH_SIZE.observe(len(live))
        try:
            vectors = await loop.run_in_executor(self._thread, self._extract, [p for p, _ in live])
        except Exception:
            log.exception("batch inference failed; retrying its images one at a time")
            await self._run_one_by_one(live)
            return
        for (_, future), vector in zip(live, vectors, strict=True):
            if not future.done():
                future.set_result(vector)

    async def _run_one_by_one(self, live: list[tuple[object, asyncio.Future[np.ndarray]]]) -> None:
        loop = asyncio.get_running_loop()
        for prepared, future in live:
            try:
                vector = (await loop.run_in_executor(self._thread, self._extract, [prepared]))[0]
            except Exception as exc:
                if not future.done():
                    future.set_exception(ItemFailure(Kind.INTERNAL,
                                                     f"inference failed: {type(exc).__name__}"))
                continue
            if not future.done():
                future.set_result(vector)

    def _extract(self, prepared: list[object]) -> np.ndarray:
        started = time.perf_counter()
        with inference_mode():
            vectors = np.asarray(self.extractor.extract(prepared), dtype=np.float32)
        metrics.INFERENCE_SECONDS.observe(time.perf_counter() - started)
        expected = (len(prepared), self.extractor.info.dimension)
        if vectors.shape != expected:
            raise RuntimeError(f"extractor returned {vectors.shape}, expected {expected}")
        return vectors

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(ItemFailure(Kind.INTERNAL, "the service is stopping"))
        self._thread.shutdown(wait=True)
