"""What one GetNextItems call adds to the sampling mix: the annotator's own exclusions
(items they skipped or were unsure about go to others), no near-duplicates leased at
once, and the detector's evidence on each item for the page's zoom."""

from __future__ import annotations

from trainer_service.domain import Evidence
from trainer_service.features.bank import FeatureBank
from trainer_service.selection.near_duplicates import LeaseGuard

# The detector evidence after the embedding: score, then x1, y1, x2, y2 (normalised).
SCORE, BOX = 0, slice(1, 5)


class Admission:
    """Admits an item to one annotator's batch unless they passed it over or it is a
    near-duplicate of something leased (see `near_duplicates.LeaseGuard`)."""

    def __init__(self, passed: dict[str, int], guard: LeaseGuard) -> None:
        self.passed, self.guard = passed, guard

    def admits(self, item_id: str) -> bool:
        return item_id not in self.passed and self.guard.admits(item_id)

    def taken(self, item_id: str) -> None:
        self.guard.taken(item_id)


def evidence(bank: FeatureBank, item_id: str, dims: int) -> Evidence | None:
    """The detector's best target-class detection for an embedded item, or None (no
    features yet, or no detection of the target class)."""
    row = bank.index.get(item_id)
    if row is None or dims <= 0 or bank.matrix.shape[1] < dims + 5:
        return None
    values = bank.matrix[row, dims:dims + 5].astype(float)
    if values[SCORE] <= 0:
        return None
    x1, y1, x2, y2 = (min(1.0, max(0.0, v)) for v in values[BOX])
    if x2 <= x1 or y2 <= y1:
        return None
    return Evidence(float(values[SCORE]), (x1, y1, x2, y2))
