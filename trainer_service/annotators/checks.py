"""Known-answer checks, per annotator: how often each one's answers on gold items agree
with the known label.

A check is decided by the first answer an annotator gives to a gold item. The page tells
an annotator who missed a check the known answer and offers to fix theirs; the fix
replaces the label in force (an undo and a new answer) but never the check, or every
failed check would end up counted as agreed. The first answers come from the annotation
log (`LabelLog.first_checks`), which is append-only and replayed at start, so a restart
changes nothing.
"""

from __future__ import annotations

from trainer_service.datasets import Catalog
from trainer_service.domain import ANSWERS, Label
from trainer_service.store.labels import LabelLog


class Checks:
    def __init__(self, catalog: Catalog, labels: LabelLog) -> None:
        self.catalog, self.labels = catalog, labels
        # Recounted only when the log changed (or more of the catalog was loaded).
        self._cache: tuple[tuple[int, int], dict[str, list[tuple[Label, Label]]]] | None = None

    def per_annotator(self) -> dict[str, list[tuple[Label, Label]]]:
        """(known label, first answer) of every gold item each annotator answered, by
        annotator in order of their first such answer."""
        key = (self.labels.version, len(self.catalog))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        pairs: dict[str, list[tuple[Label, Label]]] = {}
        items = self.catalog.items
        for (annotator, item_id), first in self.labels.first_checks.items():
            item = items.get(item_id)
            if item is None or item.known_label not in ANSWERS or first.label not in ANSWERS:
                continue  # not loaded yet after a restart, or no known answer
            pairs.setdefault(annotator, []).append((Label(item.known_label), first.label))
        self._cache = (key, pairs)
        return pairs

    def totals(self) -> tuple[int, int]:
        """(checks, agreements) over every annotator."""
        pairs = [p for one in self.per_annotator().values() for p in one]
        return len(pairs), sum(known == first for known, first in pairs)
