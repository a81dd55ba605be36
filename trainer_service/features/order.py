"""What the extraction worker asks the feature service for next, and what it adds to the
queue: labelled items first; then pool candidates, which serve the annotators, with a
share of each batch for known-label items (validation, evaluation), taken in a fixed
random order so that the embedded part of each split is a random sample of it that grows
in the background. Plain Python over the feature store's queue: no wire format here."""

from __future__ import annotations

import heapq
import time
from collections.abc import Container

import numpy as np

from trainer_service.datasets import Catalog, Item
from trainer_service.datasets.local import split_rank
from trainer_service.domain import Split
from trainer_service.features.embed_plan import Retries
from trainer_service.features.store import CANDIDATE, KNOWN, LABELLED, FeatureStore

# Share of each batch given to known-label items while pool candidates wait.
KNOWN_SHARE = 0.25


class ExtractionOrder:
    def __init__(self, store: FeatureStore, catalog: Catalog, retries: Retries, *,
                 batch: int, prefetch: int, seed: int) -> None:
        self.store, self.catalog, self.retries = store, catalog, retries
        self.batch, self.prefetch = batch, prefetch
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._ranks: dict[str, str] = {}
        self._nothing_left: tuple[int, int, int] | None = None  # (pool, bank, failed) then

    async def top_up(self) -> None:
        """Keeps `prefetch` pool candidates embedded or on their way: random picks, and
        once those mostly meet items already done, a random draw from the ones left, so
        that the last items of a pool embedded whole never wait on chance."""
        pool, items = self.catalog.pool, self.catalog.items
        bank, pending, failed = self.store.bank, self.store.pending, self.store.failed
        have = sum(1 for p in pending.values() if p == CANDIDATE) + sum(
            1 for i in bank.ids if i in items and items[i].split == Split.POOL)
        need = min(self.prefetch, len(pool)) - have
        if need <= 0 or not pool:
            return

        def new(item_id: str) -> bool:
            return item_id not in bank and item_id not in pending and item_id not in failed

        drawn = self._rng.choice(len(pool), min(len(pool), need * 2), replace=False)
        picks = [pool[int(k)] for k in drawn if new(pool[int(k)])][:need]
        state = (len(pool), len(bank), len(failed))
        if len(picks) < need and state != self._nothing_left:
            chosen = set(picks)
            left = [i for i in pool if new(i) and i not in chosen]
            if not left:
                self._nothing_left = state  # no scan again until the pool or store changes
            for k in self._rng.choice(len(left), min(len(left), need - len(picks)),
                                      replace=False):
                picks.append(left[int(k)])
        if picks:
            await self.store.enqueue(picks, CANDIDATE)

    def idle_s(self) -> float:
        """How long to wait for new work: at most until the next retry is due."""
        due = self.retries.next_due()
        return 2.0 if due is None else min(2.0, max(0.05, due - time.monotonic()))

    def next_batch(self, busy: Container[str] = frozenset()) -> list[Item]:
        """The next items to embed, in the order above, none of `busy` (in a call under
        way). Items waiting for a retry are left out; one that was in a call that failed
        whole goes alone, so that only it pays."""
        find, now, retries = self.catalog.find, time.monotonic(), self.retries
        by_priority: dict[int, list[str]] = {LABELLED: [], KNOWN: [], CANDIDATE: []}
        items: dict[str, Item] = {}
        for item_id, priority in self.store.pending.items():
            if item_id in busy:
                continue
            if (item := find(item_id)) is not None and not retries.waiting(item_id, now):
                items[item_id] = item
                by_priority.setdefault(priority, []).append(item_id)
        alone = next((i for _, ids in sorted(by_priority.items()) for i in ids
                      if retries.alone(i)), None)
        if alone is not None:  # due for its next try: before anything else, by itself
            return [items[alone]]
        for ids in by_priority.values():
            ids[:] = [i for i in ids if not retries.alone(i)]
        batch = by_priority[LABELLED][:self.batch]
        room = self.batch - len(batch)
        known, candidates = by_priority[KNOWN], by_priority[CANDIDATE]
        if room and known:
            share = max(1, round(room * KNOWN_SHARE)) if candidates else room
            batch += heapq.nsmallest(min(share, len(known)), known, key=self._sample_rank)
        batch += candidates[:self.batch - len(batch)]
        return [items[i] for i in batch]

    def _sample_rank(self, item_id: str) -> str:
        # The splits' own stable order; cached, since every batch ranks every known item.
        rank = self._ranks.get(item_id)
        if rank is None:
            rank = split_rank(item_id, self.seed)
            self._ranks[item_id] = rank
        return rank
