"""What the feature service does for each image: cache, fetch, decode, batch, remember.

Cached answers (features or a remembered failure) return without touching the fetcher,
the decoder or a model. Misses are fetched and decoded concurrently on worker threads
while earlier batches are in inference. Concurrent requests for the same key share one
computation.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from feature_service import metrics
from feature_service.batching import MicroBatcher
from feature_service.cache import Entry, FeatureCache
from feature_service.decode import decode
from feature_service.extractors.base import EVIDENCE_DIM, Extractor
from feature_service.fetch import Fetcher
from feature_service.outcomes import REMEMBERED, ItemFailure, Kind

log = logging.getLogger(__name__)

MAX_ID_CHARS = 512


@dataclass(frozen=True)
class ImageInput:
    """One image to embed: `id` is the caller's key ("" for a hash); url or data."""
    id: str = ""
    url: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class Result:
    key: str
    vector: bytes | None = None  # little-endian float32, ExtractorInfo.dimension values
    failure: ItemFailure | None = None
    cached: bool = False

    def evidence(self) -> np.ndarray:
        assert self.vector is not None
        return np.frombuffer(self.vector, dtype="<f4")[-EVIDENCE_DIM:]


def image_key(item: ImageInput) -> str:
    """The caller's id, else a hash of the URL or of the bytes."""
    if item.url is None and item.data is None:
        raise ItemFailure(Kind.INVALID, "image has neither url nor data")
    if item.id:
        if len(item.id) > MAX_ID_CHARS:
            raise ItemFailure(Kind.INVALID, f"id longer than {MAX_ID_CHARS} characters")
        return item.id
    if item.url is not None:
        return "url-sha256:" + hashlib.sha256(item.url.encode()).hexdigest()
    assert item.data is not None
    return "sha256:" + hashlib.sha256(item.data).hexdigest()


def _from_entry(key: str, entry: Entry) -> Result:
    if entry.vector is not None:
        return Result(key, vector=entry.vector, cached=True)
    assert entry.kind is not None
    return Result(key, failure=ItemFailure(entry.kind, entry.message), cached=True)


class FeaturePipeline:
    def __init__(self, extractor: Extractor, cache: FeatureCache, fetcher: Fetcher,
                 batcher: MicroBatcher, *, decode_threads: int, max_image_bytes: int,
                 max_pixels: int) -> None:
        self.extractor, self.cache, self.fetcher, self.batcher = (
            extractor, cache, fetcher, batcher)
        self.max_image_bytes, self.max_pixels = max_image_bytes, max_pixels
        self._decoders = ThreadPoolExecutor(decode_threads, thread_name_prefix="decode")
        # Decoded, preprocessed images are large (megabytes each): only this many wait for
        # the model at once; the rest of a big request waits as encoded bytes.
        self._decoded_slots = asyncio.Semaphore(3 * batcher.max_batch + decode_threads)
        self._inflight: dict[str, asyncio.Future[Result]] = {}

    async def embed(self, items: Sequence[ImageInput], bypass_cache: bool = False
                    ) -> list[Result]:
        """One result per item, in order; a failing item never affects the others."""
        results: list[Result | None] = [None] * len(items)
        keys: list[str] = []
        for i, item in enumerate(items):
            try:
                keys.append(image_key(item))
            except ItemFailure as failure:
                keys.append("")
                results[i] = Result(item.id, failure=failure)
        todo = [i for i, r in enumerate(results) if r is None]
        if not bypass_cache and todo:
            entries = self.cache.get_many([keys[i] for i in todo])
            for i, entry in zip(todo, entries, strict=True):
                # A URL that was not found says nothing about bytes sent under the same id.
                if entry is not None and not (entry.kind == Kind.NOT_FOUND
                                              and items[i].data is not None):
                    results[i] = _from_entry(keys[i], entry)
        misses = [i for i, r in enumerate(results) if r is None]
        computed = await asyncio.gather(*(self._shared(keys[i], items[i]) for i in misses))
        for i, result in zip(misses, computed, strict=True):
            results[i] = result
        final = [r for r in results if r is not None]
        outcomes = collections.Counter(
            "features" if r.failure is None else r.failure.kind.name.lower() for r in final)
        for outcome, count in outcomes.items():
            metrics.ITEMS.labels(outcome).inc(count)
        return final

    def lookup(self, keys: Sequence[str]) -> list[Result]:
        """Cache only: NOT_CACHED for keys never computed."""
        entries = self.cache.get_many(keys)
        return [Result(k, failure=ItemFailure(Kind.NOT_CACHED, "not in the cache"))
                if e is None else _from_entry(k, e) for k, e in zip(keys, entries, strict=True)]

    async def _shared(self, key: str, item: ImageInput) -> Result:
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._compute_and_store(key, item))
            self._inflight[key] = future
            future.add_done_callback(lambda _f: self._inflight.pop(key, None))
        # Shielded: one caller going away must not cancel the others' computation.
        return await asyncio.shield(future)

    async def _compute_and_store(self, key: str, item: ImageInput) -> Result:
        result = await self._compute(key, item)
        entry: Entry | None = None
        if result.vector is not None:
            entry = Entry(vector=result.vector)
        elif result.failure is not None and result.failure.kind in REMEMBERED:
            entry = Entry(kind=result.failure.kind, message=result.failure.message)
        if entry is not None:
            try:
                await self.cache.put([(key, entry)])
            except Exception:  # the caller still gets its answer; only reuse is lost
                log.exception("cache write failed", extra={"key": key})
        return result

    async def _compute(self, key: str, item: ImageInput) -> Result:
        try:
            data = item.data if item.data is not None else await self.fetcher.fetch(item.url or "")
            if len(data) > self.max_image_bytes:
                raise ItemFailure(Kind.TOO_LARGE,
                                  f"{len(data)} bytes exceeds {self.max_image_bytes}")
            loop = asyncio.get_running_loop()
            async with self._decoded_slots:
                prepared = await loop.run_in_executor(self._decoders, self._prepare, data)
                vector = await self.batcher.submit(prepared)
            return Result(key, vector=vector.astype("<f4", copy=False).tobytes())
        except ItemFailure as failure:
            return Result(key, failure=failure)
        except Exception:
            log.exception("unexpected failure embedding an image", extra={"key": key})
            return Result(key, failure=ItemFailure(Kind.INTERNAL, "unexpected error"))

    def _prepare(self, data: bytes) -> object:
        image = decode(data, max_pixels=self.max_pixels, min_side=self.extractor.min_side)
        return self.extractor.prepare(image)

    async def close(self) -> None:
        self._decoders.shutdown(wait=True)
