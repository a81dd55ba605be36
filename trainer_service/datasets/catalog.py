"""The items loaded so far, by id and by split, with the loading state."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from hitl.v1 import trainer_pb2
from trainer_service.datasets.base import EVALUATION, POOL, VALIDATION, Item, Progress


class Catalog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: dict[str, Item] = {}
        self.pool: list[str] = []
        self.validation: list[str] = []
        self.evaluation: list[str] = []
        self.state = trainer_pb2.LOADING_STATE_LOADING
        self.progress = Progress("starting")

    def add(self, items: Iterable[Item]) -> int:
        """Adds new items (ids already known are ignored); returns how many were new."""
        added = 0
        with self._lock:
            for item in items:
                if item.id in self.items:
                    continue
                self.items[item.id] = item
                {POOL: self.pool, VALIDATION: self.validation,
                 EVALUATION: self.evaluation}[item.split].append(item.id)
                added += 1
        return added

    def get(self, item_id: str) -> Item | None:
        return self.items.get(item_id)

    def __len__(self) -> int:
        return len(self.items)

    def loading_proto(self) -> trainer_pb2.LoadingProgress:
        return trainer_pb2.LoadingProgress(
            state=self.state, message=self.progress.message,
            fraction=self.progress.fraction, items_loaded=len(self.items))
