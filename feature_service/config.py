"""Settings of the feature service, read from FEATURE_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from hitl.addresses import parse_allowlist
from hitl.config import require, setting
from hitl.security import check_server_settings, server_setting

EXTRACTORS = ("resnext50-frcnn", "lite")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
LAYOUTS = ("auto", "channels_last", "contiguous")
INFERENCE = ("auto", "workers", "service")


def parse_weights(raw: str) -> tuple[tuple[str, int], ...]:
    """"trainer=2,team-a=1" to (("trainer", 2), ("team-a", 1))."""
    pairs = []
    for part in raw.split(","):
        if not part.strip():
            continue
        name, sep, weight = part.partition("=")
        if not sep or not name.strip() or not weight.strip().isdigit() or int(weight) < 1:
            raise ValueError(f"{part.strip()!r} is not caller=weight (a whole number >= 1)")
        pairs.append((name.strip(), int(weight)))
    return tuple(pairs)


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
        "Arithmetic of the models: auto measures at start which is fastest here, once per "
        "machine (kept in the cache directory); float32; bfloat16 or float16 "
        "(resnext50-frcnn, float16 on CUDA only); int8 (lite, the quantized models of `make "
        "models`). Part of the extractor version: set it where replicas on different "
        "machines must agree.", "float32")
    memory_layout: str = setting(
        "FEATURE_MEMORY_LAYOUT", "auto",
        "Tensor layout of resnext50-frcnn: auto (measured at start), channels_last or "
        "contiguous.", "channels_last")
    threads: int = setting("FEATURE_THREADS", 0,
                           "Intra-op threads of each process running the models (0: measured "
                           "at start).", "2")
    decode_workers: int = setting(
        "FEATURE_DECODE_WORKERS", 0,
        "Worker processes decoding images (and on a CPU running the models on their own "
        "batches); 0: measured at start.", "2")
    inference: str = setting(
        "FEATURE_INFERENCE", "auto",
        "Where the models run: workers (in every worker process: the CPU default), "
        "service (one copy in the service process, fed by the workers: the GPU default) "
        "or auto.", "workers")
    worker_nice: int = setting(
        "FEATURE_WORKER_NICE", 10,
        "CPU priority (Unix nice, 0-19) of the workers decoding images and running the "
        "models: extraction is bulk work, so where the service shares cores with the "
        "gateway and the trainer their requests come first; alone in a pod it changes "
        "nothing.", "0")
    compile: bool = setting(
        "FEATURE_COMPILE", False,
        "Run resnext50-frcnn's convolution trunks through torch.compile (minutes at start; "
        "worth it on a GPU, measured by `make bench-gpu`).", "true")
    calibration_s: float = setting(
        "FEATURE_CALIBRATION_S", 20.0,
        "Seconds the service may spend at start timing its candidate settings on synthetic "
        "images (0: no measurement, the defaults); settings given explicitly are not "
        "measured.", "10")
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
        "Most images in one model batch across callers; 0: measured at start (on a CPU "
        "resnext50-frcnn tries 1 to 4, as each 800 px image in a Faster R-CNN batch adds "
        "~300 MB).", "16")
    max_wait_ms: float = setting("FEATURE_MAX_WAIT_MS", 5.0,
                                 "How long a partial batch waits for more images.")
    fetch_concurrency: int = setting("FEATURE_FETCH_CONCURRENCY", 32,
                                     "Most URL fetches in progress at once.")
    stream_inflight: int = setting("FEATURE_STREAM_INFLIGHT", 4,
                                   "EmbedStream messages processed at once per stream.")
    max_inflight_bytes: int = setting(
        "FEATURE_MAX_INFLIGHT_BYTES", 256 << 20,
        "Bytes of Embed requests worked on at once: an Embed that would pass it is "
        "refused with RESOURCE_EXHAUSTED (retry with backoff), an EmbedStream waits, so "
        "request bodies cannot pile up in memory.", "268435456")
    caller_max_bytes: int = setting(
        "FEATURE_CALLER_MAX_BYTES", 0,
        "Bytes of requests one caller may have worked on at once, past which its Embed is "
        "refused and its streams wait (0: a quarter of FEATURE_MAX_INFLIGHT_BYTES), so "
        "one caller never holds the whole budget.", "67108864")
    caller_max_calls: int = setting(
        "FEATURE_CALLER_MAX_CALLS", 0,
        "Embed, EmbedStream and Lookup calls one caller may have open at once, past which "
        "it is refused with RESOURCE_EXHAUSTED (0: a quarter of "
        "FEATURE_MAX_CONCURRENT_RPCS). Health and Describe never count.", "250")
    caller_weights: tuple[tuple[str, int], ...] = setting(
        "FEATURE_CALLER_WEIGHTS", (),
        "Images each caller gets per turn when callers wait for the models (round robin; "
        "unnamed callers 1).", "trainer=2,gateway=1", parse_weights)
    stream_idle_s: float = setting(
        "FEATURE_STREAM_IDLE_S", 300.0,
        "An EmbedStream that sends nothing, with nothing of its own in progress, is closed "
        "(DEADLINE_EXCEEDED) after this many seconds.", "300")

    caller_tokens: tuple[tuple[str, str], ...] = server_setting("FEATURE", "caller_tokens")
    caller_tokens_dir: str = server_setting("FEATURE", "caller_tokens_dir")
    tls_cert: str = server_setting("FEATURE", "tls_cert")
    tls_key: str = server_setting("FEATURE", "tls_key")
    tls_client_ca: str = server_setting("FEATURE", "tls_client_ca")
    reflection: bool = server_setting("FEATURE", "reflection")
    max_concurrent_rpcs: int = server_setting("FEATURE", "max_concurrent_rpcs")
    max_connection_age_s: float = server_setting("FEATURE", "max_connection_age_s")
    max_connection_age_grace_s: float = server_setting("FEATURE", "max_connection_age_grace_s")

    @property
    def caller_bytes(self) -> int:
        return self.caller_max_bytes or max(1, self.max_inflight_bytes // 4)

    @property
    def caller_calls(self) -> int:
        limit = self.caller_max_calls or self.max_concurrent_rpcs // 4
        return max(1, limit) if self.max_concurrent_rpcs or self.caller_max_calls else 0

    def __post_init__(self) -> None:
        require(self.extractor in EXTRACTORS, "FEATURE_EXTRACTOR",
                f"must be one of {', '.join(EXTRACTORS)}", "lite")
        require(self.device in DEVICES, "FEATURE_DEVICE",
                f"must be one of {', '.join(DEVICES)}", "cpu")
        require(self.precision in PRECISIONS, "FEATURE_PRECISION",
                f"must be one of {', '.join(PRECISIONS)}", "float32")
        require(self.memory_layout in LAYOUTS, "FEATURE_MEMORY_LAYOUT",
                f"must be one of {', '.join(LAYOUTS)}", "channels_last")
        require(self.inference in INFERENCE, "FEATURE_INFERENCE",
                f"must be one of {', '.join(INFERENCE)}", "workers")
        for env, value in (("FEATURE_MAX_BATCH", self.max_batch),
                           ("FEATURE_THREADS", self.threads),
                           ("FEATURE_DECODE_WORKERS", self.decode_workers),
                           ("FEATURE_CALLER_MAX_BYTES", self.caller_max_bytes),
                           ("FEATURE_CALLER_MAX_CALLS", self.caller_max_calls)):
            require(value >= 0, env, "must be >= 0 (0: automatic)", "2")
        require(0 <= self.worker_nice <= 19, "FEATURE_WORKER_NICE", "must be 0 to 19", "10")
        require(self.calibration_s >= 0, "FEATURE_CALIBRATION_S", "must be >= 0", "10")
        require(self.stream_idle_s > 0, "FEATURE_STREAM_IDLE_S", "must be positive", "300")
        require(self.cache_max_bytes == 0 or self.cache_max_bytes >= 1 << 20,
                "FEATURE_CACHE_MAX_BYTES", "must be 0 (no cap) or at least 1 MiB",
                "17179869184")
        for env, value in (("FEATURE_MAX_ITEMS", self.max_items),
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
