"""From an image's encoded bytes to its feature vector, the way the calibration chose.

- "workers" (a CPU): every worker process decodes, prepares and runs the models on its
  own batches; only bytes and vectors cross between processes, and the service process
  does gRPC, the cache and the scheduling.
- "service" (a GPU): worker processes decode and prepare each image, and one copy of the
  models in the service process runs the batches (one GPU, one CUDA context), on its own
  inference thread.

Either way images wait in fair queues (feature_service/scheduler.py), one per caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from feature_service import metrics
from feature_service.decode import declared_pixels
from feature_service.extractors.base import Extractor, Settings
from feature_service.jobs import Job, extract_each, failure
from feature_service.outcomes import ItemFailure, Kind
from feature_service.scheduler import LARGE_PIXELS, FairBatcher
from feature_service.workers import Workers, WorkerStopped


@dataclass(frozen=True)
class Plan:
    """What the calibration chose (or the settings gave): how the models compute, where
    they run, how many images a batch holds, and how many worker processes."""
    settings: Settings
    inference: str  # "workers" or "service"
    max_batch: int
    workers: int


def _vector(outcome: object) -> np.ndarray:
    problem = failure(outcome)
    if problem is not None:
        raise problem
    assert isinstance(outcome, np.ndarray)
    return outcome


class Engine:
    def __init__(self, plan: Plan, workers: Workers, max_wait_s: float,
                 weights: dict[str, int], extractor: Extractor | None = None) -> None:
        """`extractor` runs the batches in this process ("service"); without it the
        workers do ("workers")."""
        self.plan, self.workers, self.extractor = plan, workers, extractor
        if extractor is None:
            self._model = FairBatcher(self._embed_batch, slots=workers.slots,
                                      max_batch=plan.max_batch, max_wait_s=max_wait_s,
                                      weights=weights, parallel=workers.count)
            self._prepare: FairBatcher | None = None
        else:
            self._inference = ThreadPoolExecutor(1, thread_name_prefix="inference")
            self._model = FairBatcher(self._infer, slots=1, max_batch=plan.max_batch,
                                      max_wait_s=max_wait_s, weights=weights)
            self._prepare = FairBatcher(self._prepare_one, slots=workers.slots, max_batch=1,
                                        max_wait_s=0.0, weights=weights, model_batches=False,
                                        parallel=workers.count)
            # Prepared images are large (megabytes each at 800 px): only this many wait
            # for the model at once; the rest wait as encoded bytes.
            self._prepared = asyncio.Semaphore(3 * plan.max_batch + workers.slots)

    def start(self) -> None:
        self._model.start()
        if self._prepare is not None:
            self._prepare.start()

    async def embed(self, data: bytes, caller: str) -> np.ndarray:
        """The vector of one image, or ItemFailure."""
        large = declared_pixels(data) > LARGE_PIXELS
        if self._prepare is None:
            return _vector(await self._model.submit(data, caller, large))
        async with self._prepared:
            prepared = await self._prepare.submit(data, caller, large)
            problem = failure(prepared)
            if problem is not None:
                raise problem
            return _vector(await self._model.submit(prepared, caller))

    async def _embed_batch(self, blobs: list[object], large: bool) -> list[object]:
        try:
            outcomes, seconds = await self.workers.run_timed(
                Job("embed", self.plan.settings, tuple(blobs)), large)  # type: ignore[arg-type]
        except WorkerStopped:
            raise ItemFailure(Kind.INTERNAL, "a worker process stopped; retry") from None
        metrics.INFERENCE_SECONDS.observe(seconds / self.workers.count)
        return list(outcomes)

    async def _prepare_one(self, blobs: list[object], large: bool) -> list[object]:
        try:
            return [await self.workers.run(
                Job("prepare", self.plan.settings, (blobs[0],)), large)]  # type: ignore[arg-type]
        except WorkerStopped:
            raise ItemFailure(Kind.INTERNAL, "a worker process stopped; retry") from None

    async def _infer(self, prepared: list[object], large: bool) -> list[object]:
        assert self.extractor is not None
        started = time.perf_counter()
        outcomes = await asyncio.get_running_loop().run_in_executor(
            self._inference, extract_each, self.extractor, prepared)
        metrics.INFERENCE_SECONDS.observe(time.perf_counter() - started)
        return outcomes

    async def close(self) -> None:
        await self._model.close()
        if self._prepare is not None:
            await self._prepare.close()
            self._inference.shutdown(wait=True)
        with contextlib.suppress(Exception):
            await self.workers.close()
