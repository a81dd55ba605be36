"""The trainer's vocabulary: enums and plain records the core works in.

The enums carry exactly the values of the protobuf enums of the same name (a test holds
them to it), because those values are what the SQLite log, the dataset cache and the
model files already store. Only `convert.py` translates these records to and from the
generated messages.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import grpc


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
    # Not answers: recorded in the log, never trained on, exported only on request.
    SKIP = 3  # passed over: served to others, not to this annotator again
    UNSURE = 4  # the annotator could not tell (with an optional note); as a skip otherwise


# The task a trainer without a tasks file answers, and whose rows a log written without
# naming a task belongs to.
DEFAULT_TASK = "default"

ANSWERS = frozenset({Label.POSITIVE, Label.NEGATIVE})
PASSES = frozenset({Label.SKIP, Label.UNSURE})


class Strategy(enum.IntEnum):
    """Why an item was served."""

    UNSPECIFIED = 0
    GOLD = 1
    RANDOM = 2
    UNCERTAIN = 3
    OUTLIER = 4
    COLD_START = 5
    AUDIT = 6  # a stratified draw from the audit reserve: scores models, never trains
    REVIEW = 7  # a likely label error, for another annotator's answer
    RECHECK = 8  # the annotator's own earlier item again, unannounced: never trains
    IMPORTED = 9  # not served: an admin's bulk import (trains like any answer)


class LoadingState(enum.IntEnum):
    UNSPECIFIED = 0
    LOADING = 1
    READY = 2
    FAILED = 3  # loading stopped; what was loaded stays usable


class EstimateSource(enum.IntEnum):
    UNSPECIFIED = 0
    AUDIT = 1  # annotators' answers on the audit reserve
    VALIDATION = 2  # the dataset's own verified labels


class DatasetKind(enum.IntEnum):
    UNSPECIFIED = 0
    FOLDER = 1
    MANIFEST = 2
    OPEN_IMAGES = 3


class TrainerError(Exception):
    """A request the trainer refuses, with the gRPC status its caller gets."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
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
class Evidence:
    """The detector's best target-class detection: score and box (x1, y1, x2, y2)
    normalised to [0, 1]."""

    score: float
    box: tuple[float, float, float, float]


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
    evidence: Evidence | None = None  # when the item has features and a detection


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
    note: str = ""  # the annotator's words, e.g. why they were unsure


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
    audit_labels: int = 0  # answers on the audit reserve: they score, never train
    audit_reserve: int = 0
    audit_embedded: int = 0
    validation_embedded: int = 0
    evaluation_embedded: int = 0
    skipped: int = 0  # skips and unsure marks in force
    unsure: int = 0
    reviewed: int = 0  # likely label errors answered by a second annotator
    corrected: int = 0  # of those, labels the review changed
    contested: int = 0  # two answers that disagree, waiting for a third


@dataclass(frozen=True)
class AnnotatorStats:
    """One annotator's answers and how well they agree: with their own earlier answers on
    items shown again (rechecks) and with the known labels of check (gold) items, each
    check decided by their first answer to it (`checks.py`). A kappa is None until it is
    defined (both answers needed among the pairs)."""

    annotator: str
    answers: int = 0
    skipped: int = 0
    unsure: int = 0
    rechecks: int = 0
    recheck_agreements: int = 0
    self_kappa: float | None = None
    gold_checks: int = 0
    gold_agreements: int = 0
    gold_kappa: float | None = None


@dataclass(frozen=True)
class Interval:
    value: float  # the posterior median
    low: float  # 5% and 95% posterior quantiles: a 90% interval
    high: float


@dataclass(frozen=True)
class Estimate:
    """A model's F1, precision and recall on the dataset, from labels that never trained
    or chose it."""

    f1: Interval
    precision: Interval
    recall: Interval
    labels: int  # the labels it rests on
    population: int  # the items it describes
    source: EstimateSource


@dataclass(frozen=True)
class Forecast:
    """Labels still likely needed to reach the target F1."""

    reached: bool
    labels: float  # median; 0 once reached
    low: float  # an 80% interval; high is -1 when the curve does not bound it
    high: float
    points: int  # models it rests on
    more_answers: int = 0  # audit or check answers still needed before it may count as reached


@dataclass(frozen=True)
class ModelSummary:
    """A trained model as the status shows it (the model in use, or a curve point)."""

    version: str
    labels: int
    validation: Metrics
    evaluation: Metrics
    create_time: float
    labels_given: int = 0  # every annotation in force when it was trained
    estimate: Estimate | None = None
    pinned: bool = False  # an older model held in use by an activation


@dataclass(frozen=True)
class ExtractionProgress:
    pending: int
    seconds_per_item: float  # 0 before any was measured
    eta_seconds: float  # -1 when unknown
    failed: int = 0  # items that cannot be embedded (their reasons are logged and kept)
    retrying: int = 0  # pending items waiting to be tried again after a retryable failure


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
    forecast: Forecast | None = None
    annotators: list[AnnotatorStats] = field(default_factory=list)
    scoring: ScoringProgress | None = None  # absent until the scoring job is started
    min_per_class: int = 0  # training labels of each class the first model waits for
    task: str = ""
    question: str = ""
