"""Chooses what to label next: ranked queues over the embedded pool, a sampling mix, and
leases so that many annotators never receive the same item at once.

Queues, rebuilt whenever a model lands (so no score is older than the model):
- uncertain: closest to the decision threshold, alternating between the two sides of it,
  so that under class imbalance predicted positives are never starved by the many
  near-threshold negatives;
- outlier: items whose activations (the model's view of an item: the contributions of its
  most influential standardised features to the logit) are farthest from those of every
  labelled item: score = distance to the nearest labelled item in that space;
- random: a shuffle of the pool;
- gold: validation items with known labels, to check annotators;
- cold start (before any model): random items alternated with the detector's highest
  target scores, so rare positives are found early.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from hitl.v1 import trainer_pb2
from trainer_service.model import LinearModel

GOLD: int = trainer_pb2.STRATEGY_GOLD
RANDOM: int = trainer_pb2.STRATEGY_RANDOM
UNCERTAIN: int = trainer_pb2.STRATEGY_UNCERTAIN
OUTLIER: int = trainer_pb2.STRATEGY_OUTLIER
COLD_START: int = trainer_pb2.STRATEGY_COLD_START
BY_NAME = {"gold": GOLD, "random": RANDOM, "uncertain": UNCERTAIN, "outlier": OUTLIER}
# Labelled items the outlier distance is measured against (a sample when there are more).
OUTLIER_REFERENCE = 256
OUTLIER_CHUNK = 16384
# Pool items not yet embedded (served only when every ranked queue is exhausted).
FALLBACK = -1

class Ranked:
    """A ranked queue kept as arrays (no per-item Python objects for a 100k pool): entry
    k is (ids[order[k]], scores[k])."""

    def __init__(self, ids: list[str], order: np.ndarray, scores: np.ndarray) -> None:
        self.ids, self.order, self.scores = ids, order, scores

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int | slice):  # type: ignore[no-untyped-def]
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return self.ids[self.order[k]], float(self.scores[k])

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (self[k] for k in range(len(self)))


Queue = Ranked | list[tuple[str, float]]


@dataclass
class Lease:
    item_id: str
    annotator: str
    expires: float
    strategy: int
    score: float
    model_version: str


def interleave(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """first[0], second[0], first[1], second[1], ... then the rest of the longer one."""
    m = min(len(first), len(second))
    head = np.empty(2 * m, dtype=np.int64)
    head[0::2], head[1::2] = first[:m], second[:m]
    return np.concatenate([head, first[m:], second[m:]]).astype(np.int64)


def uncertainty_queue(ids: list[str], p: np.ndarray, threshold: float) -> Ranked:
    """Nearest to the threshold first, taking turns between the positive and negative
    side of it."""
    margin = np.abs(p - threshold)
    above = np.flatnonzero(p >= threshold)
    below = np.flatnonzero(p < threshold)
    above = above[np.argsort(margin[above], kind="stable")]
    below = below[np.argsort(margin[below], kind="stable")]
    order = interleave(above, below)
    return Ranked(ids, order, p[order])


def outlier_scores(pool: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Euclidean distance from each pool row to its nearest labelled row."""
    if len(labelled) == 0:
        return np.zeros(len(pool))
    ref = labelled.astype(np.float32)
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    minus_two_ref_t = np.ascontiguousarray(-2 * ref.T)
    out = np.empty(len(pool))
    for start in range(0, len(pool), OUTLIER_CHUNK):
        a = np.asarray(pool[start:start + OUTLIER_CHUNK], dtype=np.float32)
        # |a - r|^2 = |a|^2 + (|r|^2 - 2 a.r): the minimum over r needs only the bracket.
        partial = a @ minus_two_ref_t
        partial += ref_sq
        nearest = partial.min(axis=1) + np.einsum("ij,ij->i", a, a)
        out[start:start + len(a)] = np.sqrt(np.maximum(nearest, 0))
    return out


def outlier_queue(ids: list[str], scores: np.ndarray) -> Ranked:
    order = np.argsort(-scores, kind="stable")
    return Ranked(ids, order, scores[order])


def rank(ids: list[str], x: np.ndarray, model: LinearModel | None, labelled_x: np.ndarray,
         detector_column: int, gold: list[str], rng: np.random.Generator,
         candidates: np.ndarray | None = None) -> dict[int, Queue]:
    """Every queue at once, vectorised over the whole embedded pool `x` (rows = ids).
    `candidates` (row indices) restricts the queues to those rows without copying `x`."""
    if candidates is not None:
        rows = np.asarray(candidates, dtype=np.int64)
        return rank([ids[i] for i in rows], _Rows(x, rows), model,  # type: ignore[arg-type]
                    labelled_x, detector_column, gold, rng)
    shuffled = rng.permutation(len(ids))
    gold_order = [gold[i] for i in rng.permutation(len(gold))]
    queues: dict[int, Queue] = {GOLD: [(g, 0.0) for g in gold_order]}
    random_queue = Ranked(ids, shuffled, np.zeros(len(ids)))
    if model is None:
        detector = x[:, detector_column].astype(float) if len(ids) else np.zeros(0)
        order = interleave(np.argsort(-detector, kind="stable"), shuffled)
        queues[COLD_START] = Ranked(ids, order, detector[order])
        queues[RANDOM] = random_queue
        return queues
    p = model.probability(x) if len(ids) else np.zeros(0)
    queues[UNCERTAIN] = uncertainty_queue(ids, p, model.threshold)
    dims = model.outlier_dims()
    reference = labelled_x
    if len(reference) > OUTLIER_REFERENCE:
        reference = reference[rng.choice(len(reference), OUTLIER_REFERENCE, replace=False)]
    scores = outlier_scores(model.activations(x, dims), model.activations(reference, dims))
    queues[OUTLIER] = outlier_queue(ids, scores)
    queues[RANDOM] = random_queue
    return queues


class _Rows:
    """Rows of a matrix, selected lazily: the products run on the whole matrix (no copy of
    a large pool), and only their results are indexed."""

    def __init__(self, x: np.ndarray, rows: np.ndarray) -> None:
        self.x, self.rows = x, rows
        self.shape = (len(rows), x.shape[1])

    def __len__(self) -> int:
        return len(self.rows)

    def __matmul__(self, w: np.ndarray) -> np.ndarray:
        return (self.x @ w)[self.rows]

    def __getitem__(self, key: tuple) -> np.ndarray:
        rows, cols = key
        return self.x[:, cols][self.rows][rows]


class Sampler:
    def __init__(self, mix: Iterable[tuple[str, float]], lease_s: float) -> None:
        self.weights = {BY_NAME[name]: w for name, w in mix if w > 0}
        self.lease_s = lease_s
        self.queues: dict[int, Queue] = {}
        self._cursor: dict[int, int] = {}
        self._credit: dict[int, float] = dict.fromkeys(self.weights, 0.0)
        self.leases: dict[str, Lease] = {}
        self.model_version = ""

    def install(self, queues: dict[int, Queue], model_version: str) -> None:
        """Replaces every queue at once (fresh scores from one model)."""
        self.queues = queues
        self._cursor = dict.fromkeys(queues, 0)
        self.model_version = model_version

    def _weights(self) -> dict[int, float]:
        """Before the first model, the model-based shares go to the cold-start queue; gold
        and random keep theirs, so that a random-only mix stays a true random baseline."""
        if COLD_START not in self.queues:
            return self.weights
        kept = {s: w for s, w in self.weights.items() if s in (GOLD, RANDOM)}
        cold = sum(w for s, w in self.weights.items() if s not in (GOLD, RANDOM))
        return {**kept, COLD_START: cold} if cold > 0 else kept

    def _next_strategy(self, exhausted: set[int]) -> int | None:
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
              available: Callable[[str], bool], now: float | None = None) -> list[Lease]:
        """Leases up to `count` items to `annotator`, renewing the leases of `held`."""
        now = time.time() if now is None else now
        held = set(held)
        for item_id in held:
            lease = self.leases.get(item_id)
            if lease is not None and lease.annotator == annotator:
                lease.expires = now + self.lease_s
        out: list[Lease] = []
        exhausted: set[int] = set()
        fallback = COLD_START if COLD_START in self.queues else RANDOM
        while len(out) < count:
            strategy = self._next_strategy(exhausted)
            if strategy is None:
                break
            picked = self._take(strategy, annotator, held, available, now)
            if picked is None and strategy != GOLD and FALLBACK not in exhausted:
                # Ranked queues empty (nothing embedded yet): the slot goes to an unranked
                # pool item, so gold keeps its share instead of absorbing every slot.
                picked = self._take(FALLBACK, annotator, held, available, now)
                if picked is None:
                    exhausted.add(FALLBACK)
                else:
                    strategy = fallback
            if picked is None:
                exhausted.add(strategy)
                continue
            item_id, score = picked
            lease = Lease(item_id, annotator, now + self.lease_s, strategy, score,
                          self.model_version if strategy != GOLD else "")
            self.leases[item_id] = lease
            out.append(lease)
        return out

    def _take(self, strategy: int, annotator: str, held: set[str],
              available: Callable[[str], bool], now: float) -> tuple[str, float] | None:
        """The first free item of a queue, in rank order. The cursor moves past items
        that are labelled for good; leased ones are skipped but stay for later."""
        queue = self.queues.get(strategy)
        if not queue:
            return None
        i, n = self._cursor.get(strategy, 0), len(queue)
        while i < n and not available(queue[i][0]):
            i += 1
        self._cursor[strategy] = i
        for k in range(i, n):
            item_id, score = queue[k]
            if item_id in held or not available(item_id):
                continue
            lease = self.leases.get(item_id)
            if lease is not None and lease.expires > now:
                continue
            return item_id, score
        return None

    def release(self, item_id: str) -> Lease | None:
        return self.leases.pop(item_id, None)

    def expire(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for item_id in [k for k, v in self.leases.items() if v.expires <= now]:
            del self.leases[item_id]
