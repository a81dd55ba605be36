"""What the feature service does for each image: cache, fetch, decode, batch, remember.

Features are cached by content and callers' names for images are their own
(feature_service/content.py). Cached answers (features or a remembered failure) return
without touching the decoder or a model, and a URL the caller fetched before without
touching the fetcher. Misses are fetched concurrently, then decoded and embedded by the
engine (feature_service/engine.py) in each caller's fair turn. Concurrent requests for
the same content share one computation.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from feature_service import content, metrics
from feature_service.cache import Entry, FeatureCache
from feature_service.engine import Engine
from feature_service.fetch import Fetcher
from feature_service.outcomes import REMEMBERED, ItemFailure, Kind
from hitl.auth import ANONYMOUS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageInput:
    """One image to embed: `id` is the caller's name for it ("" for a hash); url or data."""
    id: str = ""
    url: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class Result:
    key: str
    # Little-endian float32, as stored: ExtractorInfo.stored_dimension values (the
    # embedding and every detector class's evidence; vector_layout.py makes the reply).
    vector: bytes | None = None
    failure: ItemFailure | None = None
    cached: bool = False


def _from_entry(key: str, entry: Entry) -> Result:
    if entry.vector is not None:
        return Result(key, vector=entry.vector, cached=True)
    assert entry.kind is not None
    return Result(key, failure=ItemFailure(entry.kind, entry.message), cached=True)


def _remembered(result: Result, sha256: str | None) -> Entry | None:
    """What a caller's id or URL should point at after `result`, if anything."""
    if sha256 is not None and (result.vector is not None or (
            result.failure is not None and result.failure.kind is Kind.BAD_IMAGE)):
        return Entry(ref=sha256)
    if result.failure is not None and result.failure.kind in REMEMBERED:
        return Entry(kind=result.failure.kind, message=result.failure.message)
    return None


class FeaturePipeline:
    def __init__(self, engine: Engine, cache: FeatureCache, fetcher: Fetcher, *,
                 max_image_bytes: int) -> None:
        self.engine, self.cache, self.fetcher = engine, cache, fetcher
        self.max_image_bytes = max_image_bytes
        self._inflight: dict[str, asyncio.Future[Result]] = {}

    async def embed(self, items: Sequence[ImageInput], bypass_cache: bool = False,
                    caller: str = ANONYMOUS) -> list[Result]:
        """One result per item, in order; a failing item never affects the others.
        `bypass_cache` computes afresh for this caller and leaves stored features alone."""
        n = len(items)
        results: list[Result | None] = [None] * n
        shas: list[str | None] = [None] * n
        for i, item in enumerate(items):
            try:
                content.check(item.id, item.url, item.data)
            except ItemFailure as failure:
                results[i] = Result(item.id, failure=failure)
        sent = [i for i in range(n) if results[i] is None and items[i].data is not None]
        for i, sha in zip(sent, await content.digests([items[i].data or b"" for i in sent]),
                          strict=True):
            shas[i] = sha
        labels = [item.id if results[i] is not None else content.label(item.id, item.url, shas[i])
                  for i, item in enumerate(items)]
        urls = {i: content.url_key(caller, items[i].url or "") for i in range(n)
                if results[i] is None and items[i].url is not None}
        if not bypass_cache:
            self._read_known(urls, labels, results, shas)
        misses = [i for i in range(n) if results[i] is None]
        computed = await asyncio.gather(*(
            self._miss(items[i], labels[i], shas[i], bypass_cache, caller) for i in misses))
        for i, (result, found) in zip(misses, computed, strict=True):
            results[i], shas[i] = result, found
        final = [r for r in results if r is not None]
        await self._remember(caller, labels, urls, final, shas)
        outcomes = collections.Counter(
            "features" if r.failure is None else r.failure.kind.name.lower() for r in final)
        for outcome, count in outcomes.items():
            metrics.ITEMS.labels(outcome).inc(count)
        return final

    def _read_known(self, urls: dict[int, str], labels: list[str],
                    results: list[Result | None], shas: list[str | None]) -> None:
        """Answers from the cache in place: the caller's URLs it fetched before (their
        digest, or a remembered failure), then the content of every known digest."""
        fetched_before = self.cache.get_many(list(urls.values()), count=False)
        for i, entry in zip(urls, fetched_before, strict=True):
            if entry is not None and entry.ref is not None:
                shas[i] = entry.ref
            elif entry is not None:
                results[i] = _from_entry(labels[i], entry)
        known = [i for i, sha in enumerate(shas) if sha is not None and results[i] is None]
        entries = self.cache.get_many([content.content_key(shas[i] or "") for i in known])
        for i, entry in zip(known, entries, strict=True):
            if entry is not None:
                results[i] = _from_entry(labels[i], entry)
            elif i in urls:
                shas[i] = None  # its content left the cache: fetch the URL again

    async def _miss(self, item: ImageInput, label: str, sha: str | None,
                    bypass: bool, caller: str) -> tuple[Result, str | None]:
        data = item.data
        if data is None:
            try:
                data = await self.fetcher.fetch(item.url or "")
            except ItemFailure as failure:
                return Result(label, failure=failure), None
            sha = (await content.digests([data]))[0]
            if not bypass:
                (entry,) = self.cache.get_many([content.content_key(sha)])
                if entry is not None:
                    return _from_entry(label, entry), sha
        assert sha is not None
        return dataclasses.replace(await self._shared(sha, data, caller), key=label), sha

    async def _remember(self, caller: str, labels: list[str], urls: dict[int, str],
                        results: list[Result], shas: list[str | None]) -> None:
        """Points the caller's ids and URLs at what they named this time; a mapping that
        is already right is not written again, so warm calls write nothing."""
        wanted: dict[str, Entry] = {}
        for i, result in enumerate(results):
            entry = _remembered(result, shas[i])
            if entry is None:
                continue
            wanted[content.id_key(caller, labels[i])] = entry
            if i in urls:
                wanted[urls[i]] = entry
        keys = list(wanted)
        stored = self.cache.get_many(keys, count=False)
        changed = [(k, wanted[k]) for k, old in zip(keys, stored, strict=True)
                   if old != wanted[k]]
        if changed:
            try:
                await self.cache.put(changed)
            except Exception:  # the caller still gets its answers; only reuse is lost
                log.exception("cache write failed", extra={"keys": len(changed)})

    def lookup(self, keys: Sequence[str], caller: str = ANONYMOUS) -> list[Result]:
        """Cache only, through the caller's own ids: NOT_CACHED for ids it never had
        computed (or whose features have since been evicted)."""
        named = self.cache.get_many([content.id_key(caller, k) for k in keys], count=False)
        refs = {i: e.ref for i, e in enumerate(named) if e is not None and e.ref is not None}
        entries = dict(zip(refs, self.cache.get_many(
            [content.content_key(ref) for ref in refs.values()]), strict=True))
        results = []
        for i, key in enumerate(keys):
            entry = entries.get(i) if i in entries else named[i]
            results.append(Result(key, failure=ItemFailure(Kind.NOT_CACHED, "not in the cache"))
                           if entry is None else _from_entry(key, entry))
        return results

    async def _shared(self, sha: str, data: bytes, caller: str) -> Result:
        """Concurrent requests for the same content share one computation (in the turn of
        the caller that asked first)."""
        future = self._inflight.get(sha)
        if future is None:
            future = asyncio.ensure_future(self._compute_and_store(sha, data, caller))
            self._inflight[sha] = future
            future.add_done_callback(lambda _f: self._inflight.pop(sha, None))
        # Shielded: one caller going away must not cancel the others' computation.
        return await asyncio.shield(future)

    async def _compute_and_store(self, sha: str, data: bytes, caller: str) -> Result:
        result = await self._compute(sha, data, caller)
        entry: Entry | None = None
        if result.vector is not None:
            entry = Entry(vector=result.vector)
        elif result.failure is not None and result.failure.kind is Kind.BAD_IMAGE:
            entry = Entry(kind=result.failure.kind, message=result.failure.message)
        if entry is not None:
            try:
                # Never replaces stored features: what other callers get stays the same,
                # even when a recomputation (bypass_cache) differs in the last bits.
                await self.cache.put([(content.content_key(sha), entry)], replace=False)
            except Exception:  # the caller still gets its answer; only reuse is lost
                log.exception("cache write failed", extra={"sha256": sha})
        return result

    async def _compute(self, sha: str, data: bytes, caller: str) -> Result:
        try:
            if len(data) > self.max_image_bytes:
                raise ItemFailure(Kind.TOO_LARGE,
                                  f"{len(data)} bytes exceeds {self.max_image_bytes}")
            vector = await self.engine.embed(data, caller)
            return Result(sha, vector=vector.astype("<f4", copy=False).tobytes())
        except ItemFailure as failure:
            return Result(sha, failure=failure)
        except Exception:
            log.exception("unexpected failure embedding an image", extra={"sha256": sha})
            return Result(sha, failure=ItemFailure(Kind.INTERNAL, "unexpected error"))

    async def close(self) -> None:
        await self.engine.close()
