"""Features of labelled and candidate items, from the feature service.

`FeatureBank` holds the vectors in memory (one growing matrix); `Extraction` is the
background worker that asks the feature service for the pending items, most urgent first
(labelled items, then validation and evaluation, then pool candidates the prefetcher
adds), and persists both the queue and the results, so a restart resumes where it
stopped. When the feature service is down, nothing else waits: the worker backs off and
tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from hitl.channels import open_channel
from hitl.v1 import feature_pb2, feature_pb2_grpc
from trainer_service.datasets import Catalog, Item
from trainer_service.datasets.base import POOL
from trainer_service.store import Store

log = logging.getLogger(__name__)

LABELLED, KNOWN, CANDIDATE = 0, 1, 2  # extraction priorities, most urgent first
SERVICE = "hitl.v1.FeatureService"
PERMANENT = {feature_pb2.ERROR_KIND_NOT_FOUND, feature_pb2.ERROR_KIND_BAD_IMAGE,
             feature_pb2.ERROR_KIND_TOO_LARGE, feature_pb2.ERROR_KIND_FORBIDDEN_URL,
             feature_pb2.ERROR_KIND_INVALID}
MAX_BACKOFF_S = 10.0


def extractor_key(info: feature_pb2.ExtractorInfo) -> dict:
    return {"name": info.name, "version": info.version, "dimension": info.dimension,
            "embedding_dimension": info.embedding_dimension}


def key_text(extractor: dict) -> str:
    return f"{extractor['name']}:{extractor['version']}:{extractor['dimension']}"


class FeatureBank:
    """Item id -> feature row, in one matrix that doubles when full."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.index

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        if not ids:
            return
        if self._matrix.shape[1] != vectors.shape[1]:
            self.clear()
            self._matrix = np.zeros((max(1024, len(ids)), vectors.shape[1]), dtype=np.float32)
        for item_id, vector in zip(ids, vectors, strict=True):
            row = self.index.get(item_id)
            if row is None:
                row = len(self.ids)
                if row >= len(self._matrix):
                    grown = np.zeros((2 * len(self._matrix), self._matrix.shape[1]), np.float32)
                    grown[:row] = self._matrix[:row]
                    self._matrix = grown
                self.ids.append(item_id)
                self.index[item_id] = row
            self._matrix[row] = vector

    def rows(self, ids: list[str]) -> np.ndarray:
        return self._matrix[self.row_indices(ids)]

    def row_indices(self, ids: list[str]) -> np.ndarray:
        return np.asarray([self.index[i] for i in ids], dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """The filled rows (a view: growing the bank later replaces, not mutates, it)."""
        return self._matrix[:len(self.ids)]

    def clear(self) -> None:
        self.ids, self.index = [], {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)


def image_ref(item: Item) -> feature_pb2.ImageRef:
    """Remote images by URL (the feature service fetches them); local ones as bytes."""
    if item.is_remote:
        return feature_pb2.ImageRef(id=item.id, url=item.location)
    return feature_pb2.ImageRef(id=item.id, data=Path(item.location).read_bytes())


class Extraction:
    def __init__(self, store: Store, catalog: Catalog, bank: FeatureBank, *, address: str,
                 batch: int, deadline_s: float, prefetch: int, seed: int = 0,
                 on_features: Callable[[list[str]], None] = lambda ids: None,
                 on_extractor: Callable[[dict], None] = lambda extractor: None) -> None:
        self.store, self.catalog, self.bank = store, catalog, bank
        self.channel = open_channel(address, SERVICE, default_deadline_s=deadline_s)
        self.stub = feature_pb2_grpc.FeatureServiceStub(self.channel)
        self.batch, self.prefetch_size = batch, prefetch
        self.on_features, self.on_extractor = on_features, on_extractor
        self.pending: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self.extractor: dict | None = None  # as last described (or remembered)
        self.described = False
        self.seconds_per_item = 0.0
        self._rng = np.random.default_rng(seed)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def embedding_dimension(self) -> int:
        return int(self.extractor["embedding_dimension"]) if self.extractor else 0

    def eta_seconds(self) -> float:
        if not self.pending:
            return 0.0
        return len(self.pending) * self.seconds_per_item if self.seconds_per_item else -1.0

    async def start(self) -> None:
        """Restores the queue, the failures and the features of the last extractor used."""
        self.pending = dict(await self.store.run(Store.load_pending))
        self.failed = await self.store.run(Store.load_failed)
        remembered = await self.store.run(Store.get_meta, "extractor")
        if remembered:
            self.extractor = json.loads(remembered)
            await self._load_features()
        self._task = asyncio.create_task(self._run(), name="extraction")

    async def _load_features(self) -> None:
        assert self.extractor is not None
        ids, matrix = await self.store.run(Store.load_features, key_text(self.extractor))
        self.bank.clear()
        if matrix is not None:
            self.bank.add(ids, matrix)
        log.info("features loaded", extra={"items": len(ids), "pending": len(self.pending)})

    async def enqueue(self, item_ids: list[str], priority: int) -> None:
        """Queues items for extraction (persisted first); known or failed ones are skipped."""
        todo = [(i, priority) for i in item_ids if i not in self.bank and i not in self.failed
                and self.pending.get(i, 99) > priority]
        if not todo:
            return
        await self.store.run(Store.add_pending, todo)
        for item_id, p in todo:
            self.pending[item_id] = p
        self._wake.set()

    def note_pending(self, item_id: str, priority: int) -> None:
        """An extraction the store has already persisted (with an annotation)."""
        if item_id not in self.bank and self.pending.get(item_id, 99) > priority:
            self.pending[item_id] = priority
            self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.channel.close()

    async def _describe(self) -> None:
        response = await self.stub.Describe(feature_pb2.DescribeRequest(), timeout=10)
        described = extractor_key(response.extractor)
        if described != self.extractor:
            if self.extractor is not None:
                log.warning("feature extractor changed: features of the old one are dropped "
                            "and extracted again", extra={"old": self.extractor,
                                                          "new": described})
            dropped = await self.store.run(Store.drop_features, key_text(described))
            await self.store.run(Store.set_meta, "extractor", json.dumps(described))
            self.extractor = described
            await self._load_features()
            log.info("extractor", extra={"extractor": described, "dropped_features": dropped})
            self.on_extractor(described)
        self.described = True

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                if not self.described:
                    await self._describe()
                await self._top_up()
                batch = self._next_batch()
                if not batch:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=2.0)
                    continue
                await self._extract(batch)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("feature service unavailable; retrying", extra={
                    "code": exc.code().name, "detail": exc.details(), "retry_in_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception:
                log.exception("extraction failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _top_up(self) -> None:
        """Keeps `prefetch` pool candidates embedded or on their way (random picks)."""
        pool, items = self.catalog.pool, self.catalog.items
        have = sum(1 for p in self.pending.values() if p == CANDIDATE) + sum(
            1 for i in self.bank.ids if i in items and items[i].split == POOL)
        need = min(self.prefetch_size, len(pool)) - have
        if need <= 0 or not pool:
            return
        picks: list[str] = []
        for index in self._rng.choice(len(pool), min(len(pool), need * 2), replace=False):
            item_id = pool[int(index)]
            if item_id not in self.bank and item_id not in self.pending \
                    and item_id not in self.failed:
                picks.append(item_id)
                if len(picks) >= need:
                    break
        if picks:
            await self.enqueue(picks, CANDIDATE)

    def _next_batch(self) -> list[Item]:
        ready = [(p, i) for i, p in self.pending.items() if i in self.catalog.items]
        ready.sort(key=lambda e: e[0])
        return [self.catalog.items[i] for _, i in ready[:self.batch]]

    async def _extract(self, items: list[Item]) -> None:
        refs, failed = [], []
        for item in items:
            try:
                refs.append(await asyncio.to_thread(image_ref, item))
            except OSError as exc:
                failed.append((item.id, f"unreadable: {exc.strerror or exc}"))
        started = time.perf_counter()
        results = []
        if refs:
            response = await self.stub.Embed(feature_pb2.EmbedRequest(images=refs))
            results = list(response.results)
            elapsed = time.perf_counter() - started
            per_item = elapsed / len(refs)
            self.seconds_per_item = (per_item if not self.seconds_per_item
                                     else 0.7 * self.seconds_per_item + 0.3 * per_item)
        done: list[tuple[str, bytes]] = []
        dimension = int(self.extractor["dimension"]) if self.extractor else 0
        for result in results:
            if result.WhichOneof("outcome") == "features":
                if len(result.features.vector) != 4 * dimension:
                    failed.append((result.id, "feature vector of the wrong length"))
                else:
                    done.append((result.id, result.features.vector))
            elif result.error.kind in PERMANENT or not result.error.retryable:
                failed.append((result.id, feature_pb2.ErrorKind.Name(result.error.kind)
                               + ": " + result.error.message))
            # retryable errors stay pending and come round again
        assert self.extractor is not None
        await self.store.run(Store.save_features, key_text(self.extractor), done, failed)
        if done:
            self.bank.add([i for i, _ in done],
                          np.stack([np.frombuffer(v, dtype="<f4") for _, v in done]))
        for item_id, reason in failed:
            self.failed[item_id] = reason
            log.warning("item cannot be embedded", extra={"item_id": item_id, "reason": reason})
        for item_id in [i for i, _ in done] + [i for i, _ in failed]:
            self.pending.pop(item_id, None)
        retry = {r.id for r in results if r.WhichOneof("outcome") == "error"} - dict(failed).keys()
        if retry and not done:
            await asyncio.sleep(1.0)  # only retryable failures: do not spin
        if done:
            self.on_features([i for i, _ in done])
