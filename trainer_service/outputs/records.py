"""The records of what the models give the outside world: classifications of new
images, predictions for the dataset and the kept models (the scoring job's progress is
part of the status, in `domain`). Only `convert.py` translates them to and from
messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from trainer_service.domain import Estimate, Label, Metrics, Split
from trainer_service.features.records import Evidence, ExtractorRecord, ImageError


class PredictionOrder(enum.IntEnum):
    UNSPECIFIED = 0
    MOST_LIKELY = 1  # highest probability first
    BORDERLINE = 2  # closest to the threshold first


class ModelFormat(enum.IntEnum):
    UNSPECIFIED = 0  # read as NPZ
    NPZ = 1
    JSON = 2


@dataclass(frozen=True)
class Classification:
    id: str
    probability: float = 0.0
    decision: Label = Label.UNSPECIFIED
    model_version: str = ""
    evidence: Evidence | None = None
    error: ImageError | None = None


@dataclass(frozen=True)
class PredictionBatch:
    """Rows of the predictions export as columns of equal length."""

    model_version: str
    threshold: float
    item_ids: list[str]
    probabilities: np.ndarray  # float64
    labels: list[Label]  # the annotation in force; UNSPECIFIED when nobody labelled it
    known_labels: list[Label]
    splits: list[Split]
    total: int


@dataclass(frozen=True)
class PredictedItem:
    id: str
    image_url: str
    thumbnail_url: str
    probability: float
    decision: Label


@dataclass(frozen=True)
class PredictionPage:
    items: list[PredictedItem]
    next_page_token: str
    model_version: str
    threshold: float
    total: int


@dataclass(frozen=True)
class ModelEntry:
    """A kept model as the model list shows it."""

    version: str
    create_time: float
    labels: int
    positives: int
    negatives: int
    validation: Metrics
    evaluation: Metrics
    extractor: ExtractorRecord
    threshold: float
    active: bool
    compatible: bool
    estimate: Estimate | None = None


@dataclass(frozen=True)
class ModelFile:
    entry: ModelEntry
    data: bytes
    filename: str
    content_type: str
