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
    web_dir: str = setting("GATEWAY_WEB_DIR", str(ROOT / "web"),
                           "Folder of the browser UI", "/srv/web")
    vendor_dir: str = setting("GATEWAY_VENDOR_DIR", str(ROOT / "node_modules"),
                              "Folder holding the pinned npm packages the UI uses (uplot)",
                              "/srv/node_modules")
    guidelines: str = setting(
        "GATEWAY_GUIDELINES", "",
        "The task's instructions shown by the page's guidelines panel (h): plain text, a "
        "blank line between paragraphs, lines starting with '- ' as a list",
        "Count a bicycle even when only part of it shows.")
    guidelines_file: str = setting(
        "GATEWAY_GUIDELINES_FILE", "",
        "A UTF-8 text file with the instructions, instead of GATEWAY_GUIDELINES",
        "/srv/guidelines.txt")
    guidelines_examples: tuple[str, ...] = setting(
        "GATEWAY_GUIDELINES_EXAMPLES", (),
        "Example images for the guidelines, comma-separated: an image file or an http(s) "
        "URL, each optionally followed by '|' and a caption",
        "/srv/ex/rack.jpg|Yes: bicycles in a rack,/srv/ex/moto.jpg|No: a motorcycle")

    def __post_init__(self) -> None:
        require(0 < self.port < 65536, "GATEWAY_PORT", "must be a TCP port", "8080")
        require(0 <= self.metrics_port < 65536, "GATEWAY_METRICS_PORT",
                "must be a TCP port or 0", "9103")
        require(self.rpc_deadline_s > 0, "GATEWAY_RPC_DEADLINE_S", "must be positive", "5")
        require(self.export_deadline_s > 0, "GATEWAY_EXPORT_DEADLINE_S",
                "must be positive", "120")
        require(self.token == "" or len(self.token) >= 8, "GATEWAY_TOKEN",
                "must be at least 8 characters", "s3cret-token")
        require(not (self.guidelines and self.guidelines_file), "GATEWAY_GUIDELINES_FILE",
                "set GATEWAY_GUIDELINES or GATEWAY_GUIDELINES_FILE, not both",
                "/srv/guidelines.txt")
        require(not self.guidelines_file or Path(self.guidelines_file).is_file(),
                "GATEWAY_GUIDELINES_FILE", f"{self.guidelines_file} is not a file",
                "/srv/guidelines.txt")
        for entry in self.guidelines_examples:
            location = entry.partition("|")[0].strip()
            remote = location.startswith(("http://", "https://"))
            require(remote or Path(location).is_file(), "GATEWAY_GUIDELINES_EXAMPLES",
                    f"{location} is neither an image file nor an http(s) URL",
                    "/srv/ex/rack.jpg|Yes: bicycles in a rack")
