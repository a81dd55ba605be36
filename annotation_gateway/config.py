"""Gateway settings, from GATEWAY_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hitl.config import require, setting

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Config:
    port: int = setting("GATEWAY_PORT", 8080, "HTTP port of the UI and API", "8080")
    metrics_port: int = setting("GATEWAY_METRICS_PORT", 9103,
                                "Prometheus /metrics port (0 picks a free one)", "9103")
    grace_s: float = setting("GATEWAY_GRACE_S", 10.0,
                             "Seconds to finish open requests on SIGTERM", "10")
    log_level: str = setting("LOG_LEVEL", "INFO", "Log level", "DEBUG")
    host: str = setting("GATEWAY_HOST", "0.0.0.0", "Address to bind", "127.0.0.1")
    trainer_addr: str = setting("GATEWAY_TRAINER_ADDR", "localhost:50052",
                                "gRPC target of the trainer service", "dns:///trainer:50052")
    feature_addr: str = setting("GATEWAY_FEATURE_ADDR", "localhost:50051",
                                "gRPC target of the feature service", "dns:///features:50051")
    token: str = setting("GATEWAY_TOKEN", "",
                         "Access token; when set, every API call requires it", "s3cret-token")
    allowed_origins: tuple[str, ...] = setting(
        "GATEWAY_ALLOWED_ORIGINS", (),
        "Extra origins allowed to send state-changing requests (the gateway's own host "
        "is always allowed)", "https://annotate.example.org")
    secure_cookies: bool = setting("GATEWAY_SECURE_COOKIES", False,
                                   "Mark cookies Secure (serve over HTTPS)", "true")
    rpc_deadline_s: float = setting("GATEWAY_RPC_DEADLINE_S", 5.0,
                                    "Deadline of each unary call to a service", "5")
    export_deadline_s: float = setting("GATEWAY_EXPORT_DEADLINE_S", 120.0,
                                       "Deadline of a label export stream", "120")
    classify_max_images: int = setting("GATEWAY_CLASSIFY_MAX_IMAGES", 16,
                                       "Most images one POST /api/classify takes", "16")
    classify_max_bytes: int = setting(
        "GATEWAY_CLASSIFY_MAX_BYTES", 32 << 20,
        "Most bytes of images one POST /api/classify uploads, all parts together", "33554432")
    classify_deadline_s: float = setting(
        "GATEWAY_CLASSIFY_DEADLINE_S", 60.0,
        "Deadline of a classification (new images are fetched and embedded first)", "60")
    web_dir: str = setting("GATEWAY_WEB_DIR", str(ROOT / "web"),
                           "Folder of the browser UI", "/srv/web")
    vendor_dir: str = setting("GATEWAY_VENDOR_DIR", str(ROOT / "node_modules"),
                              "Folder holding the pinned npm packages the UI uses (uplot)",
                              "/srv/node_modules")

    def __post_init__(self) -> None:
        require(0 < self.port < 65536, "GATEWAY_PORT", "must be a TCP port", "8080")
        require(0 <= self.metrics_port < 65536, "GATEWAY_METRICS_PORT",
                "must be a TCP port or 0", "9103")
        require(self.rpc_deadline_s > 0, "GATEWAY_RPC_DEADLINE_S", "must be positive", "5")
        require(self.export_deadline_s > 0, "GATEWAY_EXPORT_DEADLINE_S",
                "must be positive", "120")
        require(self.classify_max_images >= 1, "GATEWAY_CLASSIFY_MAX_IMAGES",
                "must be >= 1", "16")
        require(self.classify_max_bytes >= 1024, "GATEWAY_CLASSIFY_MAX_BYTES",
                "must be at least 1024", "33554432")
        require(self.classify_deadline_s > 0, "GATEWAY_CLASSIFY_DEADLINE_S",
                "must be positive", "60")
        require(self.token == "" or len(self.token) >= 8, "GATEWAY_TOKEN",
                "must be at least 8 characters", "s3cret-token")
