"""The detector-evidence layout, the one source both sides of the feature contract use.

The feature service computes, for every image, evidence for every class its detector
knows: one row of EVIDENCE_DIM values per class (`ExtractorInfo.detector_classes` says
which, in order). A task's evidence is the row of the detector class that guides it, so
one cached entry serves every task; `task_vectors` derives a task's vectors from the
stored ones. Its layout, in order (the box normalised to [0, 1]; all zero but `count`
when the class was not detected):

    score, x1, y1, x2, y2, width, height, centre_x, centre_y, count

A stored vector is the embedding followed by one such row per detector class; a task's
vector is the embedding followed by its class's row (zeros for a task no detector class
guides). numpy is imported where used: the gateway ships this package without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

EVIDENCE_FIELDS = ("score", "x1", "y1", "x2", "y2", "width", "height", "centre_x", "centre_y",
                   "count")
EVIDENCE_DIM = len(EVIDENCE_FIELDS)
SCORE = EVIDENCE_FIELDS.index("score")
BOX = slice(EVIDENCE_FIELDS.index("x1"), EVIDENCE_FIELDS.index("y2") + 1)
COUNT = EVIDENCE_FIELDS.index("count")
# Detections above this score are counted in `count`.
COUNT_THRESHOLD = 0.5
# The `evidence_version` in Describe: changes whenever the stored layout does (which
# classes, in which order, how each row is computed), so a client keying stored vectors
# by it never reads one layout as another.
EVIDENCE_VERSION = "every-class-1"


@dataclass(frozen=True)
class DetectorClass:
    """One class a detector knows, with the Open Images label it corresponds to."""

    name: str  # the detector's own label
    open_images_id: str = ""  # e.g. "/m/0199g"; empty where no Open Images class matches
    open_images_name: str = ""

    def answers_to(self, wanted: str) -> bool:
        """Whether a task naming `wanted` (a class name or an Open Images id, in any
        case) means this class."""
        key = wanted.strip().casefold()
        return bool(key) and key in {self.name.casefold(), self.open_images_id.casefold(),
                                     self.open_images_name.casefold()}


def evidence_vector(scores: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """One class's evidence row from its detections in one image: `scores` (N,) and
    `boxes` (N, 4: x1, y1, x2, y2 normalised to [0, 1]) of detections whose *label* is
    that class."""
    import numpy as np

    if len(scores) == 0:
        return np.zeros(EVIDENCE_DIM, dtype=np.float32)
    best = int(np.argmax(scores))
    count = np.sum(scores > COUNT_THRESHOLD)
    row: np.ndarray = evidence_rows(scores[best:best + 1], boxes[best:best + 1],
                                    np.array([count]))[0]
    return row


def evidence_rows(scores: np.ndarray, boxes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n, EVIDENCE_DIM) rows, each from its best detection's score (n,) and box (n, 4)
    and its count of detections above COUNT_THRESHOLD (n,)."""
    import numpy as np

    x1, y1, x2, y2 = np.clip(np.asarray(boxes, np.float32), 0.0, 1.0).T
    return np.stack([np.asarray(scores, np.float32), x1, y1, x2, y2, x2 - x1, y2 - y1,
                     (x1 + x2) / 2, (y1 + y2) / 2, np.asarray(counts, np.float32)],
                    axis=1).astype(np.float32, copy=False)


def stored_dimension(embedding_dimension: int, classes: int) -> int:
    """Length of a stored vector: the embedding and one evidence row per class."""
    return embedding_dimension + max(classes, 1) * EVIDENCE_DIM


def class_evidence(stored: np.ndarray, embedding_dimension: int, row: int | None
                   ) -> np.ndarray:
    """(n, EVIDENCE_DIM) evidence of one detector class (its `row` in the stored layout)
    from (n, stored dimension) vectors; zeros where no class guides the task (None)."""
    import numpy as np

    stored = np.atleast_2d(stored)
    if row is None or row < 0:
        return np.zeros((len(stored), EVIDENCE_DIM), dtype=np.float32)
    start = embedding_dimension + row * EVIDENCE_DIM
    if start + EVIDENCE_DIM > stored.shape[1]:
        raise ValueError(f"evidence row {row} is beyond vectors of {stored.shape[1]} values")
    return stored[:, start:start + EVIDENCE_DIM]


def task_vectors(stored: np.ndarray, embedding_dimension: int, row: int | None) -> np.ndarray:
    """A task's (n, embedding + EVIDENCE_DIM) float32 vectors from stored ones: the
    embedding, then the evidence of the detector class in `row` (None: no class guides
    the task, and its evidence is zeros, which the standardised model ignores)."""
    import numpy as np

    stored = np.atleast_2d(np.asarray(stored, dtype=np.float32))
    return np.concatenate([stored[:, :embedding_dimension],
                           class_evidence(stored, embedding_dimension, row)], axis=1)
