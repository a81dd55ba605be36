"""Settings of the feature service, read from FEATURE_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from hitl.addresses import parse_allowlist
from hitl.config import require, setting
from hitl.security import check_server_settings, server_setting

EXTRACTORS = ("resnext50-frcnn", "lite")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "float32")


@dataclass(frozen=True)
class Config:
    port: int = setting("FEATURE_PORT", 50051, "gRPC port.")
    host: str = server_setting("FEATURE", "host")
    metrics_host: str = server_setting("FEATURE", "metrics_host")
    metrics_port: int = setting("FEATURE_METRICS_PORT", 9101,
                                "Prometheus /metrics port (0 picks a free one).")
    grace_s: float = setting("FEATURE_GRACE_S", 10.0,
                             "Seconds to finish in-flight calls after SIGTERM.")
    log_level: str = setting("LOG_LEVEL", "INFO", "Log level.", "DEBUG")
    extractor: str = setting("FEATURE_EXTRACTOR", "resnext50-frcnn",
                             "Feature extractor: resnext50-frcnn or lite.", "lite")
    device: str = setting("FEATURE_DEVICE", "auto",
                          "Inference device: auto (cuda when available), cpu or cuda.", "cpu")
    precision: str = setting(
        "FEATURE_PRECISION", "auto",
        "resnext50-frcnn arithmetic: auto runs the convolutions in float16 on CUDA and "
        "bfloat16 on CPUs that have it natively (part of the extractor version); float32 "
        "never reduces.", "float32")
    models_dir: str = setting("FEATURE_MODELS_DIR", ".models",
                              "Where `make models` put the lite extractor's files.")
    cache_dir: str = setting("FEATURE_CACHE_DIR", ".run/feature-cache",
                             "LMDB feature cache directory.")
    cache_map_bytes: int = setting("FEATURE_CACHE_MAP_BYTES", 1 << 30,
                                   "Initial LMDB map size; doubles when full.", "1073741824")
    cache_max_bytes: int = setting(
        "FEATURE_CACHE_MAX_BYTES", 0,
        "Cap on the LMDB cache file; past 90 % the oldest entries are evicted down to 75 % "
        "(0: no cap). Keep it under the volume's size.", "17179869184")
    url_allowlist: tuple[str, ...] = setting(
        "FEATURE_URL_ALLOWLIST", (),
        "Hosts, addresses or CIDRs that may be fetched although private or loopback.",
        "127.0.0.1,10.1.0.0/16", parse_allowlist)
    max_image_bytes: int = setting("FEATURE_MAX_IMAGE_BYTES", 20 << 20,
                                   "Largest encoded image accepted (bytes or fetched).")
    max_pixels: int = setting("FEATURE_MAX_PIXELS", 50_000_000,
                              "Largest decoded image (width x height) accepted.")
    connect_timeout_s: float = setting("FEATURE_CONNECT_TIMEOUT_S", 3.0,
                                       "Time limit to connect to an image server.")
    read_timeout_s: float = setting("FEATURE_READ_TIMEOUT_S", 10.0,
                                    "Time limit for one fetch, headers and body included.")
    max_redirects: int = setting("FEATURE_MAX_REDIRECTS", 3, "Redirect hops followed.")
    max_items: int = setting("FEATURE_MAX_ITEMS", 1024,
                             "Most images in one Embed/Lookup request or stream message.")
    max_message_bytes: int = setting("FEATURE_MAX_MESSAGE_BYTES", 64 << 20,
                                     "Largest gRPC message, sent or received.")
    max_batch: int = setting(
        "FEATURE_MAX_BATCH", 0,
        "Most images in one model batch across callers; 0 picks by extractor and device "
        "(on a CPU: 2 for resnext50-frcnn, as each 800 px image in a Faster R-CNN batch adds "
        "~300 MB and little speed, and 8 for lite, its fastest size; on a GPU: 32).", "16")
    max_wait_ms: float = setting("FEATURE_MAX_WAIT_MS", 5.0,
                                 "How long a partial batch waits for more images.")
    decode_threads: int = setting("FEATURE_DECODE_THREADS", 2,
                                  "Threads decoding and preprocessing images.")
    fetch_concurrency: int = setting("FEATURE_FETCH_CONCURRENCY", 32,
                                     "Most URL fetches in progress at once.")
    stream_inflight: int = setting("FEATURE_STREAM_INFLIGHT", 4,
                                   "EmbedStream messages processed at once per stream.")
    max_inflight_bytes: int = setting(
        "FEATURE_MAX_INFLIGHT_BYTES", 256 << 20,
        "Bytes of Embed requests worked on at once: an Embed that would pass it is "
        "refused with RESOURCE_EXHAUSTED (retry with backoff), an EmbedStream waits, so "
        "request bodies cannot pile up in memory.", "268435456")

    caller_tokens: tuple[tuple[str, str], ...] = server_setting("FEATURE", "caller_tokens")
    caller_tokens_dir: str = server_setting("FEATURE", "caller_tokens_dir")
    tls_cert: str = server_setting("FEATURE", "tls_cert")
    tls_key: str = server_setting("FEATURE", "tls_key")
    tls_client_ca: str = server_setting("FEATURE", "tls_client_ca")
    reflection: bool = server_setting("FEATURE", "reflection")
    max_concurrent_rpcs: int = server_setting("FEATURE", "max_concurrent_rpcs")
    max_connection_age_s: float = server_setting("FEATURE", "max_connection_age_s")
    max_connection_age_grace_s: float = server_setting("FEATURE", "max_connection_age_grace_s")

    def batch_limit(self, extractor: str, device: str) -> int:
        """FEATURE_MAX_BATCH, or the automatic choice when it is 0."""
        if self.max_batch:
            return self.max_batch
        # Measured on a 2-core CPU: batching Faster R-CNN buys no speed while its memory
        # grows ~300 MB per image; lite is fastest at 8 (46 images/s against 33 at 32).
        if device == "cpu":
            return 2 if extractor == "resnext50-frcnn" else 8
        return 32

    def __post_init__(self) -> None:
        require(self.extractor in EXTRACTORS, "FEATURE_EXTRACTOR",
                f"must be one of {', '.join(EXTRACTORS)}", "lite")
        require(self.device in DEVICES, "FEATURE_DEVICE",
                f"must be one of {', '.join(DEVICES)}", "cpu")
        require(self.precision in PRECISIONS, "FEATURE_PRECISION",
                f"must be one of {', '.join(PRECISIONS)}", "float32")
        require(self.max_batch >= 0, "FEATURE_MAX_BATCH", "must be >= 0 (0: automatic)", "16")
        require(self.cache_max_bytes == 0 or self.cache_max_bytes >= 1 << 20,
                "FEATURE_CACHE_MAX_BYTES", "must be 0 (no cap) or at least 1 MiB",
                "17179869184")
        for env, value in (("FEATURE_MAX_ITEMS", self.max_items),
                           ("FEATURE_DECODE_THREADS", self.decode_threads),
                           ("FEATURE_STREAM_INFLIGHT", self.stream_inflight),
                           ("FEATURE_MAX_INFLIGHT_BYTES", self.max_inflight_bytes),
                           ("FEATURE_FETCH_CONCURRENCY", self.fetch_concurrency),
                           ("FEATURE_MAX_IMAGE_BYTES", self.max_image_bytes),
                           ("FEATURE_MAX_PIXELS", self.max_pixels)):
            require(value >= 1, env, "must be at least 1", "8")
        require(self.max_redirects >= 0, "FEATURE_MAX_REDIRECTS", "must be >= 0", "3")
        require(self.max_wait_ms >= 0, "FEATURE_MAX_WAIT_MS", "must be >= 0", "5")
        require(self.connect_timeout_s > 0 and self.read_timeout_s > 0,
                "FEATURE_READ_TIMEOUT_S", "time limits must be positive", "10")
        check_server_settings(self, "FEATURE")
