"""Leases: which items each annotator is given, following the sampling mix over the
ranked queues, so that many annotators never receive the same item at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from trainer_service.config import STRATEGIES
from trainer_service.datasets import Item
from trainer_service.domain import Evidence, Label, LeasedItem, Strategy
from trainer_service.selection.ranking import FALLBACK, Queue

# The mix's names (TRAINER_MIX) are the strategies' own, lower case.
BY_NAME = {name: Strategy[name.upper()] for name in STRATEGIES}


@dataclass
class Lease:
    item_id: str
    annotator: str
    expires: float
    strategy: Strategy
    score: float
    model_version: str


# Per-annotator queues kept outside the ranking (e.g. items for review): the candidates
# for one annotator, best first.
Source = Callable[[str], Iterable[tuple[str, float]]]


class Admission(Protocol):
    """One lease call's extra say on each pick (e.g. no near-duplicates together): a
    refused item is passed over for now and stays in its queue."""

    def admits(self, item_id: str) -> bool: ...

    def taken(self, item_id: str) -> None: ...


class Sampler:
    def __init__(self, mix: Iterable[tuple[str, float]], lease_s: float) -> None:
        self.weights = {BY_NAME[name]: w for name, w in mix if w > 0}
        self.lease_s = lease_s
        self.queues: dict[int, Queue] = {}
        self._cursor: dict[int, int] = {}
        self._credit: dict[int, float] = dict.fromkeys(self.weights, 0.0)
        self.leases: dict[str, Lease] = {}
        self.model_version = ""
        self.sources: dict[Strategy, Source] = {}

    def add_source(self, strategy: Strategy, share: float, source: Source) -> None:
        """Gives `share` of the slots to a per-annotator source; the mix keeps the rest in
        its own proportions. A source with nothing for an annotator yields its slots."""
        if share <= 0:
            return
        self.weights = {s: w * (1 - share) for s, w in self.weights.items()}
        self.weights[strategy] = share
        self._credit[strategy] = 0.0
        self.sources[strategy] = source

    def install(self, queues: dict[int, Queue], model_version: str) -> None:
        """Replaces every queue at once (fresh scores from one model)."""
        self.queues = queues
        self._cursor = dict.fromkeys(queues, 0)
        self.model_version = model_version

    def _weights(self) -> dict[Strategy, float]:
        """Before the first model, the model-based shares go to the cold-start queue;
        gold and random keep theirs, so that a random-only mix stays a true random
        baseline, and so does the audit where it draws already (its answers will score
        the first model)."""
        if Strategy.COLD_START not in self.queues:
            return self.weights
        audits = (Strategy.AUDIT,) if self.queues.get(Strategy.AUDIT) else ()
        keeps = (Strategy.GOLD, Strategy.RANDOM, *audits, *self.sources)
        kept: dict[Strategy, float] = {s: w for s, w in self.weights.items() if s in keeps}
        cold = sum(w for s, w in self.weights.items() if s not in keeps)
        return {**kept, Strategy.COLD_START: cold} if cold > 0 else kept

    def _next_strategy(self, exhausted: set[int]) -> Strategy | None:
        """Smooth weighted round robin: over any run of picks the shares follow the mix."""
        weights = {s: w for s, w in self._weights().items() if s not in exhausted and w > 0}
        if not weights:
            return None
        total = sum(weights.values())
        for s, w in weights.items():
            self._credit[s] = self._credit.get(s, 0.0) + w
        chosen = max(weights, key=lambda s: self._credit[s])
        self._credit[chosen] -= total
        return chosen

    def lease(self, annotator: str, count: int, held: Iterable[str],
              available: Callable[[str], bool], now: float | None = None,
              admission: Admission | None = None) -> list[Lease]:
        """Leases up to `count` items to `annotator`, renewing the leases of `held`."""
        now = time.time() if now is None else now
        held = set(held)
        for item_id in held:
            lease = self.leases.get(item_id)
            if lease is not None and lease.annotator == annotator:
                lease.expires = now + self.lease_s
        out: list[Lease] = []
        exhausted: set[int] = set()
        fallback = Strategy.COLD_START if Strategy.COLD_START in self.queues else Strategy.RANDOM
        while len(out) < count:
            strategy = self._next_strategy(exhausted)
            if strategy is None:
                break
            picked = self._take(strategy, annotator, held, available, now, admission)
            if (picked is None and strategy != Strategy.GOLD and strategy not in self.sources
                    and FALLBACK not in exhausted):
                # Ranked queues empty (nothing embedded yet): the slot goes to an unranked
                # pool item, so gold keeps its share instead of absorbing every slot.
                picked = self._take(FALLBACK, annotator, held, available, now, admission)
                if picked is None:
                    exhausted.add(FALLBACK)
                else:
                    strategy = fallback
            if picked is None:
                exhausted.add(strategy)
                continue
            item_id, score = picked
            lease = Lease(item_id, annotator, now + self.lease_s, strategy, score,
                          self.model_version if strategy != Strategy.GOLD else "")
            self.leases[item_id] = lease
            out.append(lease)
            if admission is not None:
                admission.taken(item_id)
        return out

    def _free(self, item_id: str, held: set[str], now: float,
              admission: Admission | None) -> bool:
        lease = self.leases.get(item_id)
        return (item_id not in held and (lease is None or lease.expires <= now)
                and (admission is None or admission.admits(item_id)))

    def _take(self, strategy: int, annotator: str, held: set[str],
              available: Callable[[str], bool], now: float,
              admission: Admission | None = None) -> tuple[str, float] | None:
        """The first free item of a queue, in rank order. The cursor moves past items
        that are labelled for good; leased or refused ones are skipped but stay for later."""
        source = self.sources.get(strategy)  # type: ignore[call-overload]
        if source is not None:
            return next(((i, s) for i, s in source(annotator)
                         if self._free(i, held, now, admission)), None)
        queue = self.queues.get(strategy)
        if not queue:
            return None
        i, n = self._cursor.get(strategy, 0), len(queue)
        while i < n and not available(queue[i][0]):
            i += 1
        self._cursor[strategy] = i
        for k in range(i, n):
            item_id, score = queue[k]
            if available(item_id) and self._free(item_id, held, now, admission):
                return item_id, score
        return None

    def release(self, item_id: str) -> Lease | None:
        return self.leases.pop(item_id, None)

    def expire(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for item_id in [k for k, v in self.leases.items() if v.expires <= now]:
            del self.leases[item_id]


def leased_item(lease: Lease, item: Item, evidence: Evidence | None = None) -> LeasedItem:
    """What the annotator is given: public images by URL (local ones are read through the
    trainer), the known answer of gold items only, and where the detector looked."""
    return LeasedItem(
        id=item.id, image_url=item.location if item.is_remote else "",
        thumbnail_url=item.thumbnail_url if item.is_remote else "",
        strategy=lease.strategy, score=lease.score, model_version=lease.model_version,
        lease_expires=lease.expires,
        known_label=item.known_label if lease.strategy == Strategy.GOLD else Label.UNSPECIFIED,
        evidence=evidence)
