"""The cold start of a question no detector class guides: typical items of every kind of
image first, so that a rare class is met early.

Before a task has one label of each class there is no model to rank by, and where the
detector knows nothing of the class (Hydrant, Crosswalk, Traffic Light with the `lite`
pair) its evidence is all zeros. A random order then finds a class of 8% only after about
12 labels on average, and after 35 or more one time in twenty. Cluster-based sampling
(representative sampling) takes the item nearest each k-means centre of the embedding,
then the second nearest of each, and so on: a kind of scene that has a cluster of its own
is served within the first pass over the clusters.
"""

from __future__ import annotations

import numpy as np

from trainer_service.selection.nearest import nearest

# Clusters of the embedded pool: a few more than the kinds of scene a dataset usually
# mixes, so that a rare kind is not merged into a common one.
CLUSTERS = 16
# Rows the centres are fitted on (a sample, 256 per centre): rough centres are enough to
# take turns over, and a fit on 3,600 rows of 1,290 values took 0.3 s on 2 cores,
# whatever the pool's size (the rest of the pool is only assigned to them).
FIT_ROWS = 4096
ASSIGN_CHUNK = 16384


def representative_order(matrix: np.ndarray, rows: np.ndarray, rng: np.random.Generator,
                         clusters: int = CLUSTERS) -> np.ndarray:
    """Positions in `rows` (row indices of `matrix`, the candidates) in turns over k-means
    clusters, each cluster's rows nearest its centre first; the clusters take their turns
    in a random order."""
    n = len(rows)
    if n <= clusters:
        return rng.permutation(n)
    from sklearn.cluster import KMeans

    sample = np.sort(rng.choice(n, min(n, FIT_ROWS), replace=False))
    fitted = KMeans(n_clusters=clusters, n_init=1, random_state=int(rng.integers(2**31)))
    fitted.fit(np.asarray(matrix[rows[sample]], dtype=np.float32))
    chunks = (matrix[rows[start:start + ASSIGN_CHUNK]] for start in range(0, n, ASSIGN_CHUNK))
    label, distance = nearest(chunks, fitted.cluster_centers_)
    # Each row's place within its cluster (0 = nearest the centre), then the clusters in
    # a random turn order: sorting by (place, turn) gives one row of each cluster a pass.
    by_cluster = np.lexsort((distance, label))
    starts = np.searchsorted(label[by_cluster], np.arange(clusters))
    place = np.empty(n, dtype=np.int64)
    place[by_cluster] = np.arange(n) - starts[label[by_cluster]]
    turn = rng.permutation(clusters)[label]
    return np.lexsort((turn, place)).astype(np.int64)

