"""Trainer settings, read from TRAINER_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from hitl.config import require, setting

STRATEGIES = ("gold", "random", "uncertain", "outlier")


def parse_mix(raw: str) -> tuple[tuple[str, float], ...]:
    """"gold=0.1,random=0.1,uncertain=0.7,outlier=0.1" -> normalised weights."""
    parts: dict[str, float] = {}
    for chunk in raw.split(","):
        if not chunk.strip():
            continue
        name, sep, value = chunk.partition("=")
        name = name.strip().lower()
        if not sep or name not in STRATEGIES:
            raise ValueError(f"expected name=weight with names from {', '.join(STRATEGIES)}")
        weight = float(value)
        if weight < 0:
            raise ValueError("weights must be >= 0")
        parts[name] = weight
    total = sum(parts.values())
    if total <= 0:
        raise ValueError("at least one weight must be positive")
    return tuple((name, parts.get(name, 0.0) / total) for name in STRATEGIES)


@dataclass(frozen=True)
class Config:
    port: int = setting("TRAINER_PORT", 50052, "gRPC port", "50052")
    metrics_port: int = setting("TRAINER_METRICS_PORT", 9102, "Prometheus metrics port", "9102")
    grace_s: float = setting("TRAINER_GRACE_S", 10.0, "seconds to drain calls on SIGTERM", "10")
    log_level: str = setting("LOG_LEVEL", "INFO", "log level", "DEBUG")
    max_message_bytes: int = setting("TRAINER_MAX_MESSAGE_BYTES", 64 << 20,
                                     "largest gRPC message", "67108864")
    feature_addr: str = setting("TRAINER_FEATURE_ADDR", "localhost:50051",
                                "feature service address", "dns:///features:50051")
    data_dir: str = setting("TRAINER_DATA_DIR", ".run/trainer",
                            "labelled set, features, models and dataset cache", "/data/trainer")
    dataset: str = setting("TRAINER_DATASET", "openimages",
                           "a folder of images, a CSV manifest (id,location[,label]) or "
                           "'openimages'", "/data/tiles.csv")
    openimages_source: str = setting(
        "TRAINER_OPENIMAGES_SOURCE",
        "https://storage.googleapis.com/openimages/v6,https://storage.googleapis.com/"
        "openimages/v5,https://storage.googleapis.com/openimages/2018_04/validation,"
        "https://storage.googleapis.com/openimages/2018_04/test",
        "folders or http(s) base URLs (comma-separated, searched in order) holding the "
        "official Open Images CSV files", "/data/openimages")
    image_mirror: str = setting(
        "TRAINER_IMAGE_MIRROR", "https://open-images-dataset.s3.amazonaws.com",
        "public Open Images mirror used when an image CSV gives no URL",
        "https://open-images-dataset.s3.amazonaws.com")
    label_id: str = setting("TRAINER_LABEL_ID", "/m/0199g", "the task's label id", "/m/0199g")
    display_name: str = setting("TRAINER_DISPLAY_NAME", "Bicycle", "the task's label name",
                                "Bicycle")
    target_f1: float = setting("TRAINER_TARGET_F1", 0.85, "F1 the task aims for", "0.85")
    validation_fraction: float = setting(
        "TRAINER_VALIDATION_FRACTION", 0.2,
        "share of a manifest's labelled items used as validation/gold", "0.2")
    evaluation_fraction: float = setting(
        "TRAINER_EVALUATION_FRACTION", 0.2,
        "share of a manifest's labelled items held out for evaluation", "0.2")
    mix: tuple = setting("TRAINER_MIX", parse_mix("gold=0.1,random=0.1,uncertain=0.7,outlier=0.1"),
                         "sampling mix", "gold=0.1,random=0.1,uncertain=0.7,outlier=0.1",
                         parse=parse_mix)
    lease_s: float = setting("TRAINER_LEASE_S", 600.0, "seconds an item stays leased", "600")
    max_items_per_call: int = setting("TRAINER_MAX_ITEMS", 50,
                                      "most items one GetNextItems call leases", "50")
    debounce_s: float = setting("TRAINER_DEBOUNCE_S", 2.0,
                                "quiet seconds after new labels before training", "2")
    train_max_delay_s: float = setting(
        "TRAINER_TRAIN_MAX_DELAY_S", 10.0,
        "longest wait for a quiet moment: while labels keep arriving, train this often", "10")
    min_per_class: int = setting("TRAINER_MIN_PER_CLASS", 5,
                                 "labels of each class needed before the first model", "5")
    prefetch: int = setting("TRAINER_PREFETCH", 5000,
                            "unlabelled pool items kept embedded for ranking", "5000")
    embed_batch: int = setting("TRAINER_EMBED_BATCH", 32, "items per Embed call", "32")
    embed_deadline_s: float = setting("TRAINER_EMBED_DEADLINE_S", 60.0,
                                      "deadline of one Embed call", "60")
    model_c: float = setting(
        "TRAINER_MODEL_C", 0.1,
        "inverse L2 regularisation strength of the logistic regression", "0.1")
    evidence_weight: float = setting(
        "TRAINER_EVIDENCE_WEIGHT", 10.0,
        "weight of the standardised detector evidence against the embedding (1: none)", "10")
    seed: int = setting("TRAINER_SEED", 0, "seed of splits, shuffles and training", "0")
    keep_models: int = setting(
        "TRAINER_KEEP_MODELS", 20,
        "models whose weights are kept on disk (the oldest are pruned first, never the one "
        "pinned in use; their learning-curve points stay); 0 keeps all", "20")
    max_classify: int = setting("TRAINER_MAX_CLASSIFY", 64,
                                "most images one Classify call takes", "64")

    def __post_init__(self) -> None:
        require(0 <= self.port <= 65535, "TRAINER_PORT", "must be a port", "50052")
        fractions_ok = (self.validation_fraction >= 0 and self.evaluation_fraction >= 0
                        and self.validation_fraction + self.evaluation_fraction < 1)
        require(fractions_ok, "TRAINER_VALIDATION_FRACTION",
                "validation and evaluation fractions must be >= 0 and sum below 1", "0.2")
        require(self.lease_s > 0, "TRAINER_LEASE_S", "must be positive", "600")
        require(self.train_max_delay_s >= self.debounce_s, "TRAINER_TRAIN_MAX_DELAY_S",
                "must be at least TRAINER_DEBOUNCE_S", "10")
        require(self.min_per_class >= 1, "TRAINER_MIN_PER_CLASS", "must be >= 1", "5")
        require(self.embed_batch >= 1, "TRAINER_EMBED_BATCH", "must be >= 1", "32")
        require(self.model_c > 0, "TRAINER_MODEL_C", "must be positive", "0.1")
        require(self.evidence_weight > 0, "TRAINER_EVIDENCE_WEIGHT", "must be positive", "10")
        require(self.max_items_per_call >= 1, "TRAINER_MAX_ITEMS", "must be >= 1", "50")
        require(self.keep_models >= 0, "TRAINER_KEEP_MODELS", "must be >= 0", "20")
        require(self.max_classify >= 1, "TRAINER_MAX_CLASSIFY", "must be >= 1", "64")
