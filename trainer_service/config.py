"""Trainer settings, read from TRAINER_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from hitl.addresses import parse_allowlist
from hitl.config import parse_list, require, setting
from hitl.security import check_server_settings, server_setting
from trainer_service.domain import DEFAULT_TASK

DEFAULT_MIX = "gold=0.1,audit=0.1,random=0.1,uncertain=0.7"
STRATEGIES = ("gold", "audit", "random", "uncertain", "outlier")


def parse_prior(raw: str) -> tuple[float, float] | None:
    """"8,0.5" -> (slope, centre); "off" -> None."""
    if raw.strip().lower() in ("off", "none", ""):
        return None
    slope, sep, centre = raw.partition(",")
    if not sep:
        raise ValueError("expected slope,centre (or off)")
    value = (float(slope), float(centre))
    if value[0] <= 0 or not 0 < value[1] < 1:
        raise ValueError("the slope must be positive and the centre in (0, 1)")
    return value


def parse_mix(raw: str) -> tuple[tuple[str, float], ...]:
    """"gold=0.1,audit=0.1,random=0.1,uncertain=0.7" -> normalised weights."""
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
    host: str = server_setting("TRAINER", "host")
    metrics_port: int = setting("TRAINER_METRICS_PORT", 9102, "Prometheus metrics port", "9102")
    metrics_host: str = server_setting("TRAINER", "metrics_host")
    grace_s: float = setting("TRAINER_GRACE_S", 10.0, "seconds to drain calls on SIGTERM", "10")
    log_level: str = setting("LOG_LEVEL", "INFO", "log level", "DEBUG")
    blas_threads: int = setting(
        "TRAINER_BLAS_THREADS", 1,
        "threads of the linear algebra library (OpenBLAS) in this process: OpenBLAS runs "
        "one threaded call at a time, so with more than one a lease's small product waits "
        "behind background training's large one", "2")
    max_message_bytes: int = setting(
        "TRAINER_MAX_MESSAGE_BYTES", 64 << 20,
        "largest gRPC message, received or sent; each Embed request to the feature service "
        "stays under it and under the limit that service reports", "67108864")
    feature_addr: str = setting("TRAINER_FEATURE_ADDR", "localhost:50051",
                                "feature service address", "dns:///features:50051")
    feature_token: str = setting("TRAINER_FEATURE_TOKEN", "",
                                 "token the trainer presents to the feature service",
                                 "<token>", secret=True)
    feature_ca: str = setting("TRAINER_FEATURE_CA", "",
                              "PEM CA that signed the feature service's certificate: when "
                              "set, the trainer calls it over TLS", "/etc/hitl/tls/ca.crt")
    feature_client_cert: str = setting(
        "TRAINER_FEATURE_CLIENT_CERT", "",
        "PEM certificate the trainer presents to the feature service (mutual TLS)",
        "/etc/hitl/tls/tls.crt")
    feature_client_key: str = setting("TRAINER_FEATURE_CLIENT_KEY", "",
                                      "PEM key of that certificate", "/etc/hitl/tls/tls.key")
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
    download_sources: tuple[str, ...] = setting(
        "TRAINER_DOWNLOAD_SOURCES", (),
        "http(s) base URLs the trainer may download dataset files from, besides those of "
        "TRAINER_OPENIMAGES_SOURCE (comma-separated)", "https://mirror.example.org/openimages",
        parse_list)
    download_allowlist: tuple[str, ...] = setting(
        "TRAINER_DOWNLOAD_ALLOWLIST", (),
        "hosts, addresses or CIDRs that downloads may reach although private or loopback",
        "10.1.0.0/16,mirror.internal", parse_allowlist)
    download_max_bytes: int = setting("TRAINER_DOWNLOAD_MAX_BYTES", 16 << 30,
                                      "largest dataset file downloaded", "17179869184")
    download_timeout_s: float = setting("TRAINER_DOWNLOAD_TIMEOUT_S", 7200.0,
                                        "time limit of one file's download", "7200")
    download_stall_s: float = setting(
        "TRAINER_DOWNLOAD_STALL_S", 60.0,
        "time limit to connect, and for each read while downloading", "60")
    image_mirror: str = setting(
        "TRAINER_IMAGE_MIRROR", "https://open-images-dataset.s3.amazonaws.com",
        "public Open Images mirror used when an image CSV gives no URL",
        "https://open-images-dataset.s3.amazonaws.com")
    label_id: str = setting("TRAINER_LABEL_ID", "/m/0199g", "the task's label id", "/m/0199g")
    display_name: str = setting("TRAINER_DISPLAY_NAME", "Bicycle", "the task's label name",
                                "Bicycle")
    detector_class: str = setting(
        "TRAINER_DETECTOR_CLASS", "auto",
        "the detector class whose evidence guides the task: one of the feature service's "
        "detector classes, by name or Open Images id; auto: the one whose Open Images id is "
        "TRAINER_LABEL_ID, else whose name is TRAINER_DISPLAY_NAME, else none; none: no "
        "detector evidence", "Fire hydrant")
    task: str = setting(
        "TRAINER_TASK", DEFAULT_TASK,
        "name of the task these settings describe (in URLs: /t/<name>/), the one task of a "
        "trainer without TRAINER_TASKS_FILE", "bicycle")
    question: str = setting("TRAINER_QUESTION", "",
                            "the task's question as annotators read it (default: Does this "
                            "image show <display name>?)", "Is there a bicycle?")
    positive_class: str = setting(
        "TRAINER_POSITIVE_CLASS", "",
        "over a CSV manifest, column=value: rows whose column holds the value are the "
        "task's positives, every other row with a value a negative (default: the "
        "manifest's label column)", "source_class=Hydrant")
    tasks_file: str = setting(
        "TRAINER_TASKS_FILE", "",
        "a TOML file naming the tasks the trainer answers over its dataset (docs/tasks.md); "
        "without it, one task from the settings above", "/etc/hitl/tasks.toml")
    target_f1: float = setting("TRAINER_TARGET_F1", 0.85, "F1 the task aims for", "0.85")
    validation_fraction: float = setting(
        "TRAINER_VALIDATION_FRACTION", 0.2,
        "share of a manifest's labelled items used as validation/gold", "0.2")
    evaluation_fraction: float = setting(
        "TRAINER_EVALUATION_FRACTION", 0.2,
        "share of a manifest's labelled items held out for evaluation", "0.2")
    mix: tuple[tuple[str, float], ...] = setting(
        "TRAINER_MIX", parse_mix(DEFAULT_MIX),
        "sampling mix: gold (known answers, where the dataset has them), audit (the live "
        "estimate, where it has none), random, uncertain, outlier; a strategy with nothing "
        "to serve passes its share on", DEFAULT_MIX, parse=parse_mix)
    audit_reserve: float = setting(
        "TRAINER_AUDIT_RESERVE", 0.2,
        "share of the pool kept for audits (never trained on) where a dataset ships no "
        "verified labels", "0.2")
    dataset_roots: tuple[str, ...] = setting(
        "TRAINER_DATASET_ROOTS", (),
        "folders besides a manifest's own folder (and those below it) that its local images "
        "may be in, comma-separated; a row naming a file elsewhere is skipped",
        "/data/images,/srv/photos")
    lease_s: float = setting("TRAINER_LEASE_S", 600.0, "seconds an item stays leased", "600")
    answer_grace_s: float = setting(
        "TRAINER_ANSWER_GRACE_S", 86400.0,
        "seconds after its lease ends that an item's annotator may still answer it (the page "
        "keeps unsent answers across a closed tab); answers to items never served to that "
        "annotator are refused whatever the time", "86400")
    max_items_per_call: int = setting("TRAINER_MAX_ITEMS", 50,
                                      "most items one GetNextItems call leases", "50")
    debounce_s: float = setting("TRAINER_DEBOUNCE_S", 2.0,
                                "quiet seconds after new labels before training", "2")
    train_max_delay_s: float = setting(
        "TRAINER_TRAIN_MAX_DELAY_S", 10.0,
        "longest wait for a quiet moment: while labels keep arriving, train this often", "10")
    min_per_class: int = setting("TRAINER_MIN_PER_CLASS", 1,
                                 "labels of each class needed before the first model, where "
                                 "no detector prior makes one sooner", "3")
    detector_prior: tuple[float, float] | None = setting(
        "TRAINER_DETECTOR_PRIOR", (16.0, 0.5),
        "slope,centre: before the labels say otherwise, the logit of an item is slope x "
        "(its detector score - centre); the model is fitted around that guess, so a task "
        "with a detector class has a model from its first label; off: none (a model "
        "waits for TRAINER_MIN_PER_CLASS labels of each class)", "16,0.5", parse=parse_prior)
    prefetch: int = setting("TRAINER_PREFETCH", 5000,
                            "unlabelled pool items kept embedded for ranking", "5000")
    embed_batch: int = setting("TRAINER_EMBED_BATCH", 32, "items per Embed call", "32")
    embed_deadline_s: float = setting("TRAINER_EMBED_DEADLINE_S", 60.0,
                                      "deadline of one Embed call", "60")
    embed_max_attempts: int = setting(
        "TRAINER_EMBED_MAX_ATTEMPTS", 8,
        "tries of an item whose extraction keeps failing in a way the feature service calls "
        "retryable (upstream, timeout, internal); after the last it is marked failed with "
        "its reason", "8")
    embed_retry_s: float = setting(
        "TRAINER_EMBED_RETRY_S", 2.0,
        "wait before an item's second try after a retryable failure, doubled for each "
        "further try (at most 5 minutes)", "2")
    model_c: float = setting(
        "TRAINER_MODEL_C", 0.1,
        "inverse L2 regularisation strength of the logistic regression", "0.1")
    evidence_weight: float = setting(
        "TRAINER_EVIDENCE_WEIGHT", 10.0,
        "weight of the standardised detector evidence against the embedding (1: none)", "10")
    seed: int = setting("TRAINER_SEED", 0, "seed of splits, shuffles and training", "0")
    near_duplicate: float = setting(
        "TRAINER_NEAR_DUPLICATE", 0.94,
        "cosine similarity of embeddings above which two items count as near-duplicates: "
        "one is not served while the other is labelled or leased (1 turns it off)", "0.94")
    review_share: float = setting(
        "TRAINER_REVIEW_SHARE", 0.1,
        "share of served items that are likely label errors, shown to another annotator "
        "for a second answer (a disagreement goes to a third)", "0.1")
    recheck_share: float = setting(
        "TRAINER_RECHECK_SHARE", 0.02,
        "share of served items that are the annotator's own earlier items, shown again "
        "unannounced to measure self-agreement (never trains)", "0.02")
    recheck_gap: int = setting(
        "TRAINER_RECHECK_GAP", 50,
        "answers an annotator gives before one of their items may come back", "50")

    caller_tokens: tuple[tuple[str, str], ...] = server_setting("TRAINER", "caller_tokens")
    caller_tokens_dir: str = server_setting("TRAINER", "caller_tokens_dir")
    privileged_callers: tuple[str, ...] = setting(
        "TRAINER_PRIVILEGED_CALLERS", ("gateway", "admin"),
        "callers that may call every RPC (with authentication on, the others may only "
        "check health and call GetStatus)", "gateway,admin")
    tls_cert: str = server_setting("TRAINER", "tls_cert")
    tls_key: str = server_setting("TRAINER", "tls_key")
    tls_client_ca: str = server_setting("TRAINER", "tls_client_ca")
    reflection: bool = server_setting("TRAINER", "reflection")
    max_concurrent_rpcs: int = server_setting("TRAINER", "max_concurrent_rpcs")
    # One replica gains nothing from rebalancing, and the gateway's status watch (an hour
    # long, then renewed) must end by its own deadline, not be cut: age + grace > 1 h.
    max_connection_age_s: float = server_setting("TRAINER", "max_connection_age_s", 3600.0)
    max_connection_age_grace_s: float = server_setting(
        "TRAINER", "max_connection_age_grace_s", 3600.0)
    keep_models: int = setting(
        "TRAINER_KEEP_MODELS", 20,
        "models whose weights are kept on disk (the oldest are pruned first, never the one "
        "pinned in use; their learning-curve points stay); 0 keeps all", "20")
    max_classify: int = setting("TRAINER_MAX_CLASSIFY", 64,
                                "most images one Classify call takes", "64")

    def __post_init__(self) -> None:
        require(self.blas_threads >= 1, "TRAINER_BLAS_THREADS", "must be at least 1", "1")
        require(0 <= self.port <= 65535, "TRAINER_PORT", "must be a port", "50052")
        check_server_settings(self, "TRAINER")
        require(bool(self.feature_client_cert) == bool(self.feature_client_key),
                "TRAINER_FEATURE_CLIENT_KEY", "a client certificate needs its key",
                "/etc/hitl/tls/tls.key")
        require(not self.feature_client_cert or bool(self.feature_ca),
                "TRAINER_FEATURE_CA", "mutual TLS needs the server's CA too",
                "/etc/hitl/tls/ca.crt")
        require(self.download_max_bytes >= 1 and self.download_timeout_s > 0
                and self.download_stall_s > 0, "TRAINER_DOWNLOAD_MAX_BYTES",
                "download limits must be positive", "17179869184")
        fractions_ok = (self.validation_fraction >= 0 and self.evaluation_fraction >= 0
                        and self.validation_fraction + self.evaluation_fraction < 1)
        require(fractions_ok, "TRAINER_VALIDATION_FRACTION",
                "validation and evaluation fractions must be >= 0 and sum below 1", "0.2")
        require(self.lease_s > 0, "TRAINER_LEASE_S", "must be positive", "600")
        require(self.answer_grace_s >= 0, "TRAINER_ANSWER_GRACE_S", "must be >= 0", "86400")
        require(self.train_max_delay_s >= self.debounce_s, "TRAINER_TRAIN_MAX_DELAY_S",
                "must be at least TRAINER_DEBOUNCE_S", "10")
        require(self.min_per_class >= 1, "TRAINER_MIN_PER_CLASS", "must be >= 1", "5")
        require(self.embed_batch >= 1, "TRAINER_EMBED_BATCH", "must be >= 1", "32")
        require(self.embed_max_attempts >= 1, "TRAINER_EMBED_MAX_ATTEMPTS", "must be >= 1",
                "8")
        require(self.embed_retry_s >= 0, "TRAINER_EMBED_RETRY_S", "must be >= 0", "2")
        require(self.max_message_bytes >= 1 << 16, "TRAINER_MAX_MESSAGE_BYTES",
                "must be at least 65536", "67108864")
        require(0 <= self.audit_reserve < 1, "TRAINER_AUDIT_RESERVE", "must be in [0, 1)",
                "0.2")
        require(self.model_c > 0, "TRAINER_MODEL_C", "must be positive", "0.1")
        require(self.evidence_weight > 0, "TRAINER_EVIDENCE_WEIGHT", "must be positive", "10")
        require(self.max_items_per_call >= 1, "TRAINER_MAX_ITEMS", "must be >= 1", "50")
        require(0 < self.near_duplicate <= 1, "TRAINER_NEAR_DUPLICATE",
                "must be in (0, 1]", "0.94")
        shares_ok = (self.review_share >= 0 and self.recheck_share >= 0
                     and self.review_share + self.recheck_share < 1)
        require(shares_ok, "TRAINER_REVIEW_SHARE",
                "review and recheck shares must be >= 0 and sum below 1", "0.1")
        require(self.recheck_gap >= 1, "TRAINER_RECHECK_GAP", "must be >= 1", "50")
        require(self.keep_models >= 0, "TRAINER_KEEP_MODELS", "must be >= 0", "20")
        require(self.max_classify >= 1, "TRAINER_MAX_CLASSIFY", "must be >= 1", "64")
