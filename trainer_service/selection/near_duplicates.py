"""Near-duplicates: items whose image embeddings are nearly identical (cosine similarity
above a threshold). A label on one of them teaches the model next to nothing about the
other, and two of them side by side waste an annotator's time, so:

- at ranking time, pool candidates too similar to any labelled item leave the queues
  (`LabelledScreen`, incremental: each new label is compared with the candidates once);
  the candidates' unit embeddings are computed once for every task (`UnitRows`), each
  task keeping only how close each candidate comes to its own labels;
- at lease time, an item too similar to one leased to anybody, or to one already picked
  for the same batch, is passed over for now (`LeaseGuard`).

Only the embedding part of a vector counts (the detector evidence after it would make two
different street scenes without a bicycle look alike). Similarities are matrix products
of L2-normalised rows, in chunks, so a 5,000-candidate pool against thousands of labels
stays in the tens of milliseconds and bounded memory.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from trainer_service.features.store import TaskFeatures
from trainer_service.store.labels import LabelLog

# Rows per matrix product: 2,048 x 5,000 float32 similarities is 40 MB.
CHUNK = 2048


def unit_rows(x: np.ndarray, dims: int) -> np.ndarray:
    """The embedding part of each row (its first `dims` values), L2-normalised, float32."""
    e = np.asarray(x[:, :dims], dtype=np.float32)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    unit: np.ndarray = e / np.maximum(norms, 1e-12)
    return unit


def max_similarity(a: np.ndarray, b: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """For each unit row of `a` (or of `a[rows]`, gathered a chunk at a time), its highest
    cosine similarity to any unit row of `b` (-1 when `b` is empty)."""
    n = len(a) if rows is None else len(rows)
    out = np.full(n, -1.0, dtype=np.float32)
    if n == 0 or len(b) == 0:
        return out
    bt = np.ascontiguousarray(b.T)
    for start in range(0, n, CHUNK):
        chunk = a[start:start + CHUNK] if rows is None else a[rows[start:start + CHUNK]]
        out[start:start + CHUNK] = (chunk @ bt).max(axis=1)
    return out


def duplicate_pairs(unit: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Every pair (i, j, similarity) with i < j whose similarity is above `threshold`."""
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, len(unit), CHUNK):
        block = unit[start:start + CHUNK] @ unit.T
        rows, cols = np.nonzero(block > threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i < c:
                pairs.append((i, c, float(block[r, c])))
    return pairs


def enabled(threshold: float) -> bool:
    """A threshold of 1 (nothing is more than identical) turns the filter off."""
    return threshold < 1.0


def _changed(shape: tuple[int, int], matrix: np.ndarray) -> bool:
    """Another extractor's features, or a bank started again: what was kept is stale."""
    return bool(shape[1] != matrix.shape[1] or matrix.shape[0] < shape[0])


class UnitRows:
    """Unit embeddings of feature-bank rows, each computed when first asked for and kept
    for every task's screen: an embedding does not depend on the question asked of it.
    Called from worker threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shape: tuple[int, int] = (0, 0)
        self._pos: dict[int, int] = {}  # bank row -> row of `_unit`
        self._unit = np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._pos)

    def of(self, matrix: np.ndarray, dims: int, rows: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
        """(kept unit rows, where the bank `rows` are in it), computing those not kept."""
        with self._lock:
            if _changed(self._shape, matrix):
                self._pos, self._unit = {}, np.zeros((0, 0), dtype=np.float32)
            self._shape = matrix.shape
            fresh = np.asarray(sorted({r for r in rows.tolist() if r not in self._pos}),
                               dtype=np.int64)
            if len(fresh):
                n = len(self._pos)
                if n + len(fresh) > len(self._unit):
                    grown = np.zeros((max(2 * len(self._unit), n + len(fresh)), dims),
                                     dtype=np.float32)
                    if n:
                        grown[:n] = self._unit[:n]
                    self._unit = grown  # a new array: earlier snapshots stay valid
                self._unit[n:n + len(fresh)] = unit_rows(matrix[fresh], dims)
                self._pos.update(zip(fresh.tolist(), range(n, n + len(fresh)), strict=True))
            at = np.asarray([self._pos[r] for r in rows.tolist()], dtype=np.int64)
            return self._unit, at


class LabelledScreen:
    """Which candidates are near-duplicates of a labelled item. Keeps, per candidate seen,
    its highest similarity to the labelled rows compared so far, so each call only
    compares what is new: new labels against the known candidates, new candidates
    against every label. The candidates' unit embeddings come from `units`, which every
    task's screen may share. Called from worker threads, hence the lock."""

    def __init__(self, threshold: float, units: UnitRows | None = None) -> None:
        self.threshold = threshold
        self.units = units if units is not None else UnitRows()
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pos: dict[int, int] = {}  # bank row -> position in `_best`
        self._best = np.zeros(0, dtype=np.float32)
        self._folded: set[int] = set()  # labelled rows compared with every kept row
        self._shape: tuple[int, int] = (0, 0)

    def keep(self, matrix: np.ndarray, dims: int, candidates: np.ndarray,
             labelled: np.ndarray) -> np.ndarray:
        """The candidate rows that are no near-duplicate of any labelled row."""
        candidates = np.asarray(candidates, dtype=np.int64)
        if not enabled(self.threshold) or dims <= 0 or len(candidates) == 0:
            return candidates
        with self._lock:
            best = self._update(matrix, dims, candidates, np.asarray(labelled, np.int64))
        return candidates[best <= self.threshold]

    def _update(self, matrix: np.ndarray, dims: int, candidates: np.ndarray,
                labelled: np.ndarray) -> np.ndarray:
        labelled_set = set(labelled.tolist())
        # A withdrawn label, or another extractor's features: start again.
        if not self._folded <= labelled_set or _changed(self._shape, matrix):
            self._reset()
        self._shape = matrix.shape
        # Rows that stopped being candidates (labelled since) are dropped now and then.
        if len(self._pos) > 2 * len(candidates) + 1024:
            self._compact(candidates)
        new_labels = np.asarray(sorted(labelled_set - self._folded), dtype=np.int64)
        if len(new_labels) and self._pos:
            n = len(self._pos)
            unit, at = self.units.of(matrix, dims, np.fromiter(self._pos, np.int64, n))
            sims = max_similarity(unit, unit_rows(matrix[new_labels], dims), at)
            np.maximum(self._best[:n], sims, out=self._best[:n])
        fresh = np.asarray([r for r in candidates.tolist() if r not in self._pos], np.int64)
        if len(fresh):
            unit, at = self.units.of(matrix, dims, fresh)
            self._append(fresh, max_similarity(unit, unit_rows(matrix[labelled], dims), at))
        self._folded = labelled_set
        return self._best[[self._pos[r] for r in candidates.tolist()]]

    def _append(self, rows: np.ndarray, best: np.ndarray) -> None:
        n = len(self._pos)
        self._best = np.concatenate([self._best[:n], best])
        # Insertion order is position order: `_update` lists the rows from it.
        self._pos.update(zip(rows.tolist(), range(n, n + len(rows)), strict=True))

    def _compact(self, candidates: np.ndarray) -> None:
        kept = [r for r in candidates.tolist() if r in self._pos]
        at = np.asarray([self._pos[r] for r in kept], dtype=np.int64)
        self._best = self._best[at]
        self._pos = {r: k for k, r in enumerate(kept)}


class LeaseGuard:
    """One lease call's check: an item is admitted only when it is no near-duplicate of a
    reference item (those leased to anybody, and those labelled since the last screening)
    or of one picked earlier in the same batch. Items without features (served before
    extraction caught up) cannot be compared and are admitted."""

    def __init__(self, matrix: np.ndarray, index: dict[str, int], dims: int,
                 reference: list[str], threshold: float, room: int) -> None:
        self.matrix, self.index, self.dims, self.threshold = matrix, index, dims, threshold
        self.on = enabled(threshold) and dims > 0
        rows = sorted({index[i] for i in reference if i in index}) if self.on else []
        size = len(rows) + max(room, 0)
        self._unit = np.zeros((size, max(dims, 0)), dtype=np.float32)
        self._rows = np.full(size, -1, dtype=np.int64)
        self._n = len(rows)
        if rows:
            self._unit[:self._n] = unit_rows(matrix[np.asarray(rows)], dims)
            self._rows[:self._n] = rows

    def _row(self, item_id: str) -> int | None:
        row = self.index.get(item_id)
        return row if self.on and row is not None and row < len(self.matrix) else None

    def admits(self, item_id: str) -> bool:
        row = self._row(item_id)
        if row is None or self._n == 0:
            return True
        sims = self._unit[:self._n] @ unit_rows(self.matrix[row:row + 1], self.dims)[0]
        sims[self._rows[:self._n] == row] = -1.0  # an item is not its own duplicate
        return bool(sims.max() <= self.threshold)

    def taken(self, item_id: str) -> None:
        row = self._row(item_id)
        if row is None:
            return
        if self._n == len(self._unit):  # more picks than planned: grow
            grow = max(8, self._n)
            self._unit = np.concatenate(
                [self._unit, np.zeros((grow, self.dims), dtype=np.float32)])
            self._rows = np.concatenate([self._rows, np.full(grow, -1, dtype=np.int64)])
        self._unit[self._n] = unit_rows(self.matrix[row:row + 1], self.dims)[0]
        self._rows[self._n] = row
        self._n += 1


class NearDuplicates:
    """The trainer's one view of near-duplicates: screens the ranked candidates against
    every labelled item, and guards each lease against leased and freshly labelled items
    (those answered since the queues were last screened)."""

    def __init__(self, threshold: float, features: TaskFeatures, labels: LabelLog,
                 units: UnitRows | None = None) -> None:
        self.threshold, self.features, self.labels = threshold, features, labels
        self.labelled = LabelledScreen(threshold, units)
        self.recent: dict[str, int] = {}  # item -> log version when answered
        self._screened_at = 0  # log version when the last screening started

    def answered(self, item_id: str) -> None:
        if enabled(self.threshold):
            self.recent[item_id] = self.labels.version

    async def screen(self, candidates: np.ndarray) -> np.ndarray:
        """The candidate rows (of the feature bank) that are no near-duplicate of a
        labelled item. Labels folded in by the previous screening are in the queues in
        use by now, so the lease guard no longer needs them."""
        if not enabled(self.threshold):
            return candidates
        self.recent = {i: v for i, v in self.recent.items() if v > self._screened_at}
        self._screened_at = self.labels.version
        bank = self.features.bank
        labelled = bank.row_indices([i for i in self.labels.active if i in bank])
        matrix, dims = bank.matrix, self.features.embedding_dimension
        return await asyncio.to_thread(self.labelled.keep, matrix, dims, candidates, labelled)

    def guard(self, leased: list[str], room: int) -> LeaseGuard:
        bank = self.features.bank
        return LeaseGuard(bank.matrix, bank.index, self.features.embedding_dimension,
                          [*leased, *self.recent], self.threshold, room)
