"""The trainer's vocabulary: enums and plain records the core works in.

The enums carry exactly the values of the protobuf enums of the same name (a test holds
them to it), because those values are what the SQLite log, the dataset cache and the
model files already store. Only `convert.py` translates these records to and from the
generated messages.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Split(enum.IntEnum):
    """Which part of the dataset an item belongs to."""

    UNSPECIFIED = 0
    POOL = 1  # unlabelled candidates: annotations on them train the model
    VALIDATION = 2  # known labels: gold items and the shown F-score
    EVALUATION = 3  # known labels, held out: reported, never sampled


class Label(enum.IntEnum):
    UNSPECIFIED = 0
    POSITIVE = 1
    NEGATIVE = 2


class Strategy(enum.IntEnum):
    """Why an item was served."""

    UNSPECIFIED = 0
    GOLD = 1
    RANDOM = 2
    UNCERTAIN = 3
    OUTLIER = 4
    COLD_START = 5


class LoadingState(enum.IntEnum):
    UNSPECIFIED = 0
    LOADING = 1
    READY = 2
    FAILED = 3  # loading stopped; what was loaded stays usable


class DatasetKind(enum.IntEnum):
    UNSPECIFIED = 0
    FOLDER = 1
    MANIFEST = 2
    OPEN_IMAGES = 3


class TrainerError(Exception):
    """A request the trainer refuses; `code` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Metrics:
    """Classifier quality on one labelled split, at one threshold."""

    f1: float = 0.0
    precision: float = 0.0
    recall: float = 0.0
    roc_auc: float = 0.0
    average_precision: float = 0.0
    threshold: float = 0.5
    positives: int = 0
    negatives: int = 0


@dataclass(frozen=True)
class LoadingProgress:
    state: LoadingState
    message: str
    fraction: float  # in [0, 1], or -1 when unknown
    items_loaded: int


@dataclass(frozen=True)
class LeasedItem:
    """An item leased to one annotator. The URLs are empty for local images, which are
    read through the trainer."""

    id: str
    image_url: str
    thumbnail_url: str
    strategy: Strategy
    score: float
    model_version: str
    lease_expires: float  # seconds since the epoch
    known_label: Label = Label.UNSPECIFIED  # gold items only


@dataclass(frozen=True, slots=True)
class Annotation:
    annotation_id: str
    item_id: str
    label: Label
    annotator: str
    strategy: Strategy  # why the item was served, and the model that scored it
    model_version: str
    duration_ms: int
    split: Split
    time: float
    undone: bool = False


@dataclass(frozen=True)
class GoldCheck:
    known_label: Label
    agrees: bool


@dataclass(frozen=True)
class Recorded:
    """The answer to an annotation: what the log holds for its id."""

    annotation: Annotation
    duplicate: bool  # the id was already recorded: this call changed nothing
    gold_check: GoldCheck | None = None  # gold items only


@dataclass
class Counts:
    items: int = 0
    pool: int = 0
    validation: int = 0
    evaluation: int = 0
    embedded: int = 0  # pool items with features, ready to be ranked
    labelled_positive: int = 0  # training annotations in force
    labelled_negative: int = 0
    gold_checks: int = 0
    gold_agreements: int = 0


@dataclass(frozen=True)
class ModelSummary:
    """A trained model as the status shows it (the model in use, or a curve point)."""

    version: str
    labels: int
    validation: Metrics
    evaluation: Metrics
    create_time: float


@dataclass(frozen=True)
class ExtractionProgress:
    pending: int
    seconds_per_item: float  # 0 before any was measured
    eta_seconds: float  # -1 when unknown


class ScoringState(enum.IntEnum):
    UNSPECIFIED = 0
    RUNNING = 1
    DONE = 2
    FAILED = 3  # stopped early; what was embedded stays


@dataclass(frozen=True)
class ScoringProgress:
    """The dataset scoring job: items to embed, done so far, and the time left."""

    state: ScoringState
    total: int = 0
    embedded: int = 0
    failed: int = 0
    items_per_second: float = 0.0
    eta_seconds: float = -1.0  # -1 when unknown
    message: str = ""
    scored: int = 0  # items with a prediction once done
    start_time: float = 0.0


@dataclass(frozen=True)
class Status:
    label_id: str
    display_name: str
    loading: LoadingProgress
    counts: Counts
    target_f1: float
    extraction: ExtractionProgress
    model: ModelSummary | None = None  # absent before the first model
    learning_curve: list[ModelSummary] = field(default_factory=list)  # oldest first
    scoring: ScoringProgress | None = None  # absent until the scoring job is started
