"""The nearest of a few reference rows for every row of a large pool: the outlier queue
(the nearest labelled item) and the representative cold start (the nearest k-means centre)
both ask it of the whole embedded pool, a chunk of rows at a time."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def nearest(chunks: Iterable[np.ndarray], reference: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest `reference` row, squared Euclidean distance to it) for every
    row of the `chunks`, in order. Chunks keep the products small; no pool is copied
    whole."""
    ref = np.asarray(reference, dtype=np.float32)
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    minus_two_ref_t = np.ascontiguousarray(-2 * ref.T)
    indices, distances = [], []
    for chunk in chunks:
        a = np.asarray(chunk, dtype=np.float32)
        # |a - r|^2 = |a|^2 + (|r|^2 - 2 a.r): the nearest r needs only the bracket.
        partial = a @ minus_two_ref_t
        partial += ref_sq
        index = partial.argmin(axis=1)
        indices.append(index)
        distances.append(partial[np.arange(len(a)), index] + np.einsum("ij,ij->i", a, a))
    if not indices:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(indices), np.maximum(np.concatenate(distances), 0).astype(float)
