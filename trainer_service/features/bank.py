"""Feature vectors in memory: item id -> row of one matrix that doubles when full."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class FeatureBank:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        # Grows with every change: what was computed from the bank is stale once it moves.
        self.generation = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.index

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        if not ids:
            return
        self.generation += 1
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

    def rows(self, ids: list[str]) -> npt.NDArray[np.float32]:
        return self._matrix[self.row_indices(ids)]

    def row_indices(self, ids: list[str]) -> npt.NDArray[np.int64]:
        return np.asarray([self.index[i] for i in ids], dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """The filled rows (a view: growing the bank later replaces, not mutates, it)."""
        return self._matrix[:len(self.ids)]

    def clear(self) -> None:
        self.generation += 1
        self.ids, self.index = [], {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)
