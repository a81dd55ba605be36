"""The feature service's answers as plain records: the image asked for, the vector or the
error that came back, and the detector's evidence. Only `convert.py` and the feature
client (`extraction.py`) know the messages they come from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

# What the trainer records of an extractor's features, kept as JSON with the features and
# with every model: its name, version and dimensions, and the detector class whose
# evidence the task reads (`task_evidence.extractor_record` makes one).
ExtractorRecord: TypeAlias = dict[str, Any]


@dataclass(frozen=True)
class ImageSource:
    """A new image to classify: exactly one of `url` and `data` is set."""

    id: str  # the caller's name for it, only echoed back
    url: str = ""
    data: bytes = b""


@dataclass(frozen=True)
class Evidence:
    """The detector's evidence for the target class in one image."""

    score: float
    box: tuple[float, float, float, float] | None  # x1, y1, x2, y2 in [0, 1]
    count: int


@dataclass(frozen=True)
class ImageError:
    kind: str  # the feature service's error kind, e.g. "BAD_IMAGE"
    message: str
    retryable: bool


@dataclass(frozen=True)
class Embedded:
    """The feature service's answer for one image: a vector or an error."""

    id: str
    vector: np.ndarray | None  # float32, the task's (models' input)
    evidence: Evidence | None = None  # of the task's detector class
    stored: np.ndarray | None = None  # float32, as the trainer keeps it (every class)
    error: ImageError | None = None
