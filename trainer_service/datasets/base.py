"""The item record every loader produces."""

from __future__ import annotations

from dataclasses import dataclass

from hitl.v1 import common_pb2, trainer_pb2

# Plain ints: the enum values travel through numpy arrays, SQLite and pickles.
POOL: int = trainer_pb2.SPLIT_POOL
VALIDATION: int = trainer_pb2.SPLIT_VALIDATION
EVALUATION: int = trainer_pb2.SPLIT_EVALUATION
POSITIVE: int = common_pb2.LABEL_POSITIVE
NEGATIVE: int = common_pb2.LABEL_NEGATIVE


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    # A local path or an http(s) URL of the full image.
    location: str
    split: int
    # The known label of validation and evaluation items; 0 for the pool, whose labels
    # (when a source has any) are never given to the trainer.
    known_label: int = 0
    thumbnail_url: str = ""

    @property
    def is_remote(self) -> bool:
        return is_url(self.location)


@dataclass(frozen=True)
class Progress:
    message: str
    # Fraction done in [0, 1], or -1 when unknown.
    fraction: float = -1.0
