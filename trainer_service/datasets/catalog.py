"""The items loaded so far, by id and by split, with the loading state."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from trainer_service.datasets.base import Item, Progress
from trainer_service.domain import LoadingProgress, LoadingState, Split


class Catalog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: dict[str, Item] = {}
        self.pool: list[str] = []
        self.validation: list[str] = []
        self.evaluation: list[str] = []
        self.state = LoadingState.LOADING
        self.progress = Progress("starting")
        # Items another catalogue of the same dataset holds and this one does not (a
        # task's own known labels): found for embedding and images, never served here.
        self.elsewhere: dict[str, Item] = {}

    def add(self, items: Iterable[Item]) -> int:
        """Adds new items (ids already known are ignored); returns how many were new."""
        added = 0
        with self._lock:
            for item in items:
                if item.id in self.items:
                    continue
                self.items[item.id] = item
                {Split.POOL: self.pool, Split.VALIDATION: self.validation,
                 Split.EVALUATION: self.evaluation}[item.split].append(item.id)
                added += 1
        return added

    def get(self, item_id: str) -> Item | None:
        return self.items.get(item_id)

    def find(self, item_id: str) -> Item | None:
        """The item, whichever catalogue of the dataset holds it."""
        return self.items.get(item_id) or self.elsewhere.get(item_id)

    def share(self, items: list[Item]) -> list[Item]:
        """Another reading of this dataset's items (a task's own known labels), as it
        should be kept: an item equal to one of ours is ours (one object in memory, not
        two), and one we lack is noted `elsewhere`."""
        out = []
        for item in items:
            mine = self.items.get(item.id)
            if mine is None:
                self.elsewhere[item.id] = item
            out.append(mine if mine == item else item)
        return out

    def __len__(self) -> int:
        return len(self.items)

    def loading(self) -> LoadingProgress:
        return LoadingProgress(self.state, self.progress.message, self.progress.fraction,
                               len(self.items))
