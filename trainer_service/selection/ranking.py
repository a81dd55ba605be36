"""Ranked queues of what to label next, scored over the whole embedded pool.

Queues, rebuilt whenever a model lands (so no score is older than the model):
- uncertain: closest to the decision threshold, alternating between the two sides of it,
  so that under class imbalance predicted positives are never starved by the many
  near-threshold negatives;
- outlier: items whose activations (the model's view of an item: the contributions of its
  most influential standardised features to the logit) are farthest from those of every
  labelled item: score = distance to the nearest labelled item in that space;
- random: a shuffle of the pool;
- gold: validation items with known labels, to check annotators;
- cold start (before the first model): random items alternated with the detector's
  highest scores for the task's class, so rare positives are found early (where no
  detector class guides the task, the embedding's typical items of every cluster:
  `representative.py`); once there is a label of each class, a provisional model's most
  uncertain items take the detector's (or the typical items') turns;
- audit: draws from the audit reserve, stratified by detector score (`audit.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, overload

import numpy as np

from hitl.background import Debounced
from trainer_service import metrics
from trainer_service.datasets import Catalog
from trainer_service.domain import Split, Strategy
from trainer_service.features.store import TaskFeatures
from trainer_service.models.classifier import LinearModel
from trainer_service.models.training import Training
from trainer_service.quality.evaluation import Evaluation
from trainer_service.selection.nearest import nearest
from trainer_service.selection.representative import representative_order

log = logging.getLogger(__name__)

# Labelled items the outlier distance is measured against (a sample when there are more).
OUTLIER_REFERENCE = 256
OUTLIER_CHUNK = 16384
# Pool items not yet embedded (served only when every ranked queue is exhausted).
FALLBACK = -1
# New features are ranked after this pause, so that a burst of them costs one ranking.
RERANK_DELAY_S = 1.0
# Unranked pool items queued for the fallback.
FALLBACK_SIZE = 2000


class Ranked:
    """A ranked queue kept as arrays (no per-item Python objects for a 100k pool): entry
    k is (ids[order[k]], scores[k])."""

    def __init__(self, ids: list[str], order: np.ndarray, scores: np.ndarray) -> None:
        self.ids, self.order, self.scores = ids, order, scores

    def __len__(self) -> int:
        return len(self.order)

    @overload
    def __getitem__(self, k: int) -> tuple[str, float]: ...
    @overload
    def __getitem__(self, k: slice) -> list[tuple[str, float]]: ...
    def __getitem__(self, k: int | slice) -> tuple[str, float] | list[tuple[str, float]]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return self.ids[self.order[k]], float(self.scores[k])

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return (self[k] for k in range(len(self)))


Queue = Ranked | list[tuple[str, float]]
# By strategy, plus FALLBACK.
Queues = dict[int, Queue]


def interleave(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """first[0], second[0], first[1], second[1], ... then the rest of the longer one."""
    m = min(len(first), len(second))
    head = np.empty(2 * m, dtype=np.int64)
    head[0::2], head[1::2] = first[:m], second[:m]
    return np.concatenate([head, first[m:], second[m:]]).astype(np.int64)


def uncertainty_order(p: np.ndarray, threshold: float) -> np.ndarray:
    """Nearest to the threshold first, taking turns between the positive and negative
    side of it."""
    margin = np.abs(p - threshold)
    above = np.flatnonzero(p >= threshold)
    below = np.flatnonzero(p < threshold)
    above = above[np.argsort(margin[above], kind="stable")]
    below = below[np.argsort(margin[below], kind="stable")]
    return interleave(above, below)


def uncertainty_queue(ids: list[str], p: np.ndarray, threshold: float) -> Ranked:
    order = uncertainty_order(p, threshold)
    return Ranked(ids, order, p[order])


def outlier_scores(pool: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Euclidean distance from each pool row to its nearest labelled row."""
    if len(labelled) == 0:
        return np.zeros(len(pool))
    chunks = (pool[start:start + OUTLIER_CHUNK] for start in range(0, len(pool), OUTLIER_CHUNK))
    _, squared = nearest(chunks, labelled)
    distance: np.ndarray = np.sqrt(squared)
    return distance


def outlier_queue(ids: list[str], scores: np.ndarray) -> Ranked:
    order = np.argsort(-scores, kind="stable")
    return Ranked(ids, order, scores[order])


def rank(ids: list[str], x: np.ndarray, model: LinearModel | None, labelled_x: np.ndarray,
         detector_column: int, gold: list[str], rng: np.random.Generator,
         candidates: np.ndarray | None = None,
         provisional: LinearModel | None = None) -> Queues:
    """Every queue at once, vectorised over the whole embedded pool `x` (rows = ids).
    `candidates` (row indices) restricts the queues to those rows without copying `x`.
    Before the first model, a `provisional` one (from the first labels of each class)
    ranks the cold start by its uncertainty."""
    if candidates is not None:
        rows = np.asarray(candidates, dtype=np.int64)
        return rank([ids[i] for i in rows], _Rows(x, rows), model,  # type: ignore[arg-type]
                    labelled_x, detector_column, gold, rng, provisional=provisional)
    shuffled = rng.permutation(len(ids))
    gold_order = [gold[i] for i in rng.permutation(len(gold))]
    queues: Queues = {Strategy.GOLD: [(g, 0.0) for g in gold_order]}
    random_queue = Ranked(ids, shuffled, np.zeros(len(ids)))
    if model is None:
        detector = x[:, detector_column].astype(float) if len(ids) else np.zeros(0)
        if provisional is not None and len(ids):
            p = provisional.probability(x)
            order = interleave(uncertainty_order(p, provisional.threshold), shuffled)
        elif np.any(detector):
            order = interleave(np.argsort(-detector, kind="stable"), shuffled)
        else:  # no detector class guides the task: typical items of every kind first
            matrix, rows = (x.x, x.rows) if isinstance(x, _Rows) else (x, np.arange(len(ids)))
            order = representative_order(matrix, rows, rng)
        queues[Strategy.COLD_START] = Ranked(ids, order, detector[order])
        queues[Strategy.RANDOM] = random_queue
        return queues
    p = model.probability(x) if len(ids) else np.zeros(0)
    queues[Strategy.UNCERTAIN] = uncertainty_queue(ids, p, model.threshold)
    dims = model.outlier_dims()
    reference = labelled_x
    if len(reference) > OUTLIER_REFERENCE:
        reference = reference[rng.choice(len(reference), OUTLIER_REFERENCE, replace=False)]
    scores = outlier_scores(model.activations(x, dims), model.activations(reference, dims))
    queues[Strategy.OUTLIER] = outlier_queue(ids, scores)
    queues[Strategy.RANDOM] = random_queue
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
        product: np.ndarray = (self.x @ w)[self.rows]
        return product

    def __getitem__(self, key: tuple[Any, Any]) -> np.ndarray:
        rows, cols = key
        picked: np.ndarray = self.x[:, cols][self.rows][rows]
        return picked



class Ranker:
    """Scores the embedded pool with the model in use and hands the queues over (to the
    sampler): after every new model, and shortly after new features arrive."""

    def __init__(self, catalog: Catalog, features: TaskFeatures, training: Training,
                 available: Callable[[str], bool], install: Callable[[Queues, str], None],
                 seed: int, evaluation: Evaluation,
                 screen: Callable[[np.ndarray], Awaitable[np.ndarray]] | None = None) -> None:
        self.catalog, self.features, self.training = catalog, features, training
        self.available, self.install, self.evaluation = available, install, evaluation
        # Drops candidate rows that must not be served (near-duplicates of labels).
        self.screen = screen
        self._rng = np.random.default_rng(seed)
        self._reranker = Debounced(self.rerank, name="rerank", log=log, delay_s=RERANK_DELAY_S,
                                   failure="the pool could not be ranked")

    def schedule(self) -> None:
        self._reranker.schedule()

    async def close(self) -> None:
        await self._reranker.close()

    async def rerank(self) -> None:
        """Scores the whole embedded pool with the model in use and replaces the queues."""
        bank = self.features.bank
        n = len(bank)
        ids = bank.ids[:n]
        items = self.catalog.items
        reserved = self.evaluation.reserved
        candidates = np.asarray(
            [k for k, i in enumerate(ids) if i in items and items[i].split == Split.POOL
             and self.available(i) and not reserved(i)], dtype=np.int64)
        if self.screen is not None:
            candidates = await self.screen(candidates)
        train_ids, _ = self.training.training_set()
        matrix = bank.matrix
        labelled_x = matrix[bank.row_indices(train_ids)]
        model = self.training.model
        info = self.training.model_info
        version = info.version if info else ""
        gold = list(self.catalog.validation)
        started = time.perf_counter()
        queues = await asyncio.to_thread(
            rank, ids, matrix, model, labelled_x, self.features.embedding_dimension, gold,
            self._rng, candidates, self.training.provisional)
        queues[Strategy.AUDIT] = self.evaluation.audit_queue(model, self.available, self._rng)
        # Before features exist, items not yet embedded keep annotators busy.
        pool = self.catalog.pool
        fallback: Any = self._rng.choice(len(pool), min(len(pool), FALLBACK_SIZE),
                                         replace=False) if pool else []
        queues[FALLBACK] = [(pool[int(i)], 0.0) for i in fallback if not reserved(pool[int(i)])]
        self.install(queues, version)
        metrics.RANK_SECONDS.observe(time.perf_counter() - started)
