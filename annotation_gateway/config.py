"""Gateway settings, from GATEWAY_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hitl.auth import parse_tokens
from hitl.config import parse_list, require, setting

ROOT = Path(__file__).resolve().parents[1]
OFF = frozenset({"off", "none", "0"})


def rate_is_valid(raw: str) -> bool:
    if raw.strip().lower() in OFF:
        return True
    count, _, per = raw.strip().partition("/")
    return count.isdigit() and int(count) > 0 and per.strip().lower() in (
        "second", "minute", "hour")


@dataclass(frozen=True)
class Config:
    port: int = setting("GATEWAY_PORT", 8080, "HTTP port of the UI and API", "8080")
    metrics_port: int = setting("GATEWAY_METRICS_PORT", 9103,
                                "Prometheus /metrics port (0 picks a free one)", "9103")
    metrics_host: str = setting(
        "GATEWAY_METRICS_HOST", "127.0.0.1",
        "Address the metrics port binds (127.0.0.1: this machine only; 0.0.0.0 in a pod, "
        "where a NetworkPolicy admits the scraper alone)", "0.0.0.0")
    grace_s: float = setting("GATEWAY_GRACE_S", 10.0,
                             "Seconds to finish open requests on SIGTERM", "10")
    log_level: str = setting("LOG_LEVEL", "INFO", "Log level", "DEBUG")
    host: str = setting("GATEWAY_HOST", "127.0.0.1",
                        "Address to bind; any but a loopback address needs annotator tokens "
                        "(GATEWAY_ANNOTATOR_TOKENS or _DIR), GATEWAY_SESSION_SECRET and "
                        "GATEWAY_ALLOWED_HOSTS", "0.0.0.0")
    trainer_addr: str = setting("GATEWAY_TRAINER_ADDR", "localhost:50052",
                                "gRPC target of the trainer service", "dns:///trainer:50052")
    feature_addr: str = setting("GATEWAY_FEATURE_ADDR", "localhost:50051",
                                "gRPC target of the feature service", "dns:///features:50051")
    annotator_tokens: tuple[tuple[str, str], ...] = setting(
        "GATEWAY_ANNOTATOR_TOKENS", (),
        "Annotators and their sign-in tokens, name=token or name=sha256:<hex digest of the "
        "token>, comma-separated: an annotator's name is the one their token signs in as. "
        "With neither this nor GATEWAY_ANNOTATOR_TOKENS_DIR, on loopback only, anyone "
        "chooses a name and may do everything (the local demo)",
        "alice=<token>,bob=sha256:<hex>", parse_tokens, secret=True)
    annotator_tokens_dir: str = setting(
        "GATEWAY_ANNOTATOR_TOKENS_DIR", "",
        "A folder with one file per annotator, named after them, holding their token or "
        "sha256:<hex> (a mounted Secret)", "/etc/hitl/annotators")
    admins: tuple[str, ...] = setting(
        "GATEWAY_ADMINS", (),
        "Annotators with the admin role: label export and model administration",
        "alice,carol", parse_list)
    session_secret: str = setting(
        "GATEWAY_SESSION_SECRET", "",
        "Key that signs session cookies (at least 32 characters; the same on every "
        "replica); several, comma-separated, newest last, to rotate it. Unset on loopback: "
        "a random key per start", "<64 random hex digits>", secret=True)
    session_ttl_s: float = setting("GATEWAY_SESSION_TTL_S", 12 * 3600.0,
                                   "Seconds a sign-in lasts", "43200")
    allowed_hosts: tuple[str, ...] = setting(
        "GATEWAY_ALLOWED_HOSTS", (),
        "Host names the gateway answers to (the Host header, port aside); bound to "
        "loopback, localhost, 127.0.0.1 and ::1 are allowed too", "annotate.example.org",
        parse_list)
    login_rate: str = setting(
        "GATEWAY_LOGIN_RATE", "30/minute",
        "Sign-in attempts (and requests with an unknown token) per client address, as "
        "N/second, N/minute or N/hour, per gateway process; past it 429 with Retry-After "
        "('off': no limit)", "10/minute")
    lease_rate: str = setting(
        "GATEWAY_LEASE_RATE", "120/minute",
        "Item leases (GET /api/items/next) per annotator, as for GATEWAY_LOGIN_RATE; the "
        "page needs a few a minute", "120/minute")
    grpc_token: str = setting("GATEWAY_GRPC_TOKEN", "",
                              "Token the gateway presents to the trainer and the feature "
                              "service (its caller identity there)", "<token>", secret=True)
    grpc_ca: str = setting("GATEWAY_GRPC_CA", "",
                           "PEM CA that signed the services' certificates: when set, the "
                           "gateway calls them over TLS", "/etc/hitl/tls/ca.crt")
    grpc_client_cert: str = setting("GATEWAY_GRPC_CLIENT_CERT", "",
                                    "PEM certificate the gateway presents to the services "
                                    "(mutual TLS)", "/etc/hitl/tls/tls.crt")
    grpc_client_key: str = setting("GATEWAY_GRPC_CLIENT_KEY", "",
                                   "PEM key of that certificate", "/etc/hitl/tls/tls.key")
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
    task_deadline_s: float = setting(
        "GATEWAY_TASK_DEADLINE_S", 120.0,
        "Deadline of adding, archiving or restoring a task (answered once the task serves, "
        "which reads its dataset's labels again)", "120")
    classify_max_images: int = setting("GATEWAY_CLASSIFY_MAX_IMAGES", 16,
                                       "Most images one POST /api/classify takes", "16")
    classify_max_bytes: int = setting(
        "GATEWAY_CLASSIFY_MAX_BYTES", 32 << 20,
        "Most bytes of images one POST /api/classify uploads, all parts together", "33554432")
    classify_rate: str = setting(
        "GATEWAY_CLASSIFY_RATE", "30/minute",
        "Classify requests (POST /api/classify) per annotator (per client address without "
        "one), as for GATEWAY_LOGIN_RATE", "30/minute")
    upload_requests: int = setting(
        "GATEWAY_UPLOAD_REQUESTS", 4,
        "Uploads (classify, label imports) one gateway process handles at once; past it "
        "503 with Retry-After before the body is read", "4")
    uploads_per_caller: int = setting(
        "GATEWAY_UPLOADS_PER_CALLER", 1,
        "Uploads one annotator (one client address without a name) may have in flight at "
        "once; past it 429 with Retry-After before the body is read, so one caller's "
        "parallel uploads never hold every slot or take the cores from the others", "2")
    upload_bytes: int = setting(
        "GATEWAY_UPLOAD_BYTES", 0,
        "Bytes of upload bodies one gateway process holds at once, all uploads together "
        "(an upload waits for room before its body is read); 0: an eighth of the "
        "process's cgroup memory limit (each byte held costs about three), 64 MiB without "
        "one", "67108864")
    classify_deadline_s: float = setting(
        "GATEWAY_CLASSIFY_DEADLINE_S", 60.0,
        "Deadline of a classification (new images are fetched and embedded first)", "60")
    web_dir: str = setting("GATEWAY_WEB_DIR", str(ROOT / "web"),
                           "Folder of the browser UI", "/srv/web")
    vendor_dir: str = setting("GATEWAY_VENDOR_DIR", str(ROOT / "node_modules"),
                              "Folder holding the pinned npm packages the UI uses (uplot, "
                              "swagger-ui-dist)",
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
        require(self.task_deadline_s > 0, "GATEWAY_TASK_DEADLINE_S", "must be positive", "120")
        require(self.session_ttl_s > 0, "GATEWAY_SESSION_TTL_S", "must be positive", "43200")
        for env, rate in (("GATEWAY_LOGIN_RATE", self.login_rate),
                          ("GATEWAY_LEASE_RATE", self.lease_rate),
                          ("GATEWAY_CLASSIFY_RATE", self.classify_rate)):
            require(rate_is_valid(rate), env, "must be N/second, N/minute or N/hour, or off",
                    "30/minute")
        require(bool(self.grpc_client_cert) == bool(self.grpc_client_key),
                "GATEWAY_GRPC_CLIENT_KEY", "a client certificate needs its key",
                "/etc/hitl/tls/tls.key")
        require(not self.grpc_client_cert or bool(self.grpc_ca), "GATEWAY_GRPC_CA",
                "mutual TLS needs the services' CA too", "/etc/hitl/tls/ca.crt")
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
        require(self.upload_requests >= 1, "GATEWAY_UPLOAD_REQUESTS", "must be >= 1", "4")
        require(self.uploads_per_caller >= 1, "GATEWAY_UPLOADS_PER_CALLER", "must be >= 1",
                "1")
        require(self.upload_bytes == 0 or self.upload_bytes >= 1 << 20, "GATEWAY_UPLOAD_BYTES",
                "must be 0 (from the memory limit) or at least 1 MiB", "67108864")
        require(self.classify_max_images >= 1, "GATEWAY_CLASSIFY_MAX_IMAGES",
                "must be >= 1", "16")
        require(self.classify_max_bytes >= 1024, "GATEWAY_CLASSIFY_MAX_BYTES",
                "must be at least 1024", "33554432")
        require(self.classify_deadline_s > 0, "GATEWAY_CLASSIFY_DEADLINE_S",
                "must be positive", "60")
