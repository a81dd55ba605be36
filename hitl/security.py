"""How a gRPC server is exposed: its callers (hitl.auth), TLS or mutual TLS, reflection,
and the bounds on calls and connections. Built from a service's settings, which use the
same field names in every service's Config (with the service's own prefix)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from hitl.auth import Access, Callers, parse_tokens, read_token_dir
from hitl.config import ConfigError, require, setting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerOptions:
    host: str = "[::]"
    metrics_host: str = "127.0.0.1"
    access: Access = field(default_factory=Access)
    tls_cert: str = ""
    tls_key: str = ""
    # With a client CA, only clients presenting a certificate it signed may connect.
    tls_client_ca: str = ""
    reflection: bool = True
    max_concurrent_rpcs: int = 0  # 0: no limit
    # After this age a connection is asked to go away (GOAWAY): the client reconnects and
    # re-resolves the target, so replicas added since it connected get their share.
    max_connection_age_s: float = 0.0  # 0: connections live on
    max_connection_age_grace_s: float = 0.0  # calls in flight get this long to finish

    def grpc_options(self) -> list[tuple[str, int]]:
        if not self.max_connection_age_s:
            return []
        return [("grpc.max_connection_age_ms", int(self.max_connection_age_s * 1000)),
                ("grpc.max_connection_age_grace_ms",
                 int(self.max_connection_age_grace_s * 1000))]

    def credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials, or None for plaintext."""
        if not self.tls_cert:
            return None
        pair = (_read(self.tls_key, "TLS key"), _read(self.tls_cert, "TLS certificate"))
        client_ca = _read(self.tls_client_ca, "client CA") if self.tls_client_ca else None
        return grpc.ssl_server_credentials([pair], root_certificates=client_ca,
                                           require_client_auth=client_ca is not None)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"the {what} {path} cannot be read: {exc.strerror or exc}") from None


# name: (variable suffix, default, meaning, example, parser, secret); "{p}" in a meaning
# is the service's prefix.
_SETTINGS: dict[str, tuple[str, Any, str, str, Any, bool]] = {
    "host": ("HOST", "[::]", "Address the gRPC port binds ([::]: every interface).",
             "127.0.0.1", None, False),
    "metrics_host": ("METRICS_HOST", "127.0.0.1", "Address the Prometheus metrics port "
                     "binds (127.0.0.1: this machine only; 0.0.0.0 in a pod, where a "
                     "NetworkPolicy admits the scraper alone).", "0.0.0.0", None, False),
    "caller_tokens": (
        "CALLER_TOKENS", (), "Callers and their tokens, name=token or name=sha256:<hex "
        "digest of the token>, comma-separated; with neither this nor {p}_CALLER_TOKENS_DIR "
        "every caller is accepted (local development only).",
        "trainer=<token>,team-a=sha256:<hex>", parse_tokens, True),
    "caller_tokens_dir": (
        "CALLER_TOKENS_DIR", "", "A folder with one file per caller, named after it, "
        "holding its token or sha256:<hex> (a mounted Secret).", "/etc/hitl/callers",
        None, False),
    "tls_cert": ("TLS_CERT", "", "PEM certificate chain of the gRPC port; with "
                 "{p}_TLS_KEY set the port speaks TLS.", "/etc/hitl/tls/tls.crt", None, False),
    "tls_key": ("TLS_KEY", "", "PEM private key of that certificate.",
                "/etc/hitl/tls/tls.key", None, False),
    "tls_client_ca": ("TLS_CLIENT_CA", "", "PEM CA bundle: when set, clients must present "
                      "a certificate it signed (mutual TLS).", "/etc/hitl/tls/ca.crt",
                      None, False),
    "reflection": ("REFLECTION", True, "Serve gRPC server reflection (it needs a caller "
                   "token like any call but health).", "false", None, False),
    "max_concurrent_rpcs": (
        "MAX_CONCURRENT_RPCS", 1000, "Calls served at once; past it a call is refused with "
        "RESOURCE_EXHAUSTED at once (0: no limit).", "1000", None, False),
    "max_connection_age_s": (
        "MAX_CONNECTION_AGE_S", 300.0, "Seconds after which a client connection is asked "
        "to go away (GOAWAY); the client reconnects and re-resolves, so replicas started "
        "since reach their share of calls (0: never).", "300", None, False),
    "max_connection_age_grace_s": (
        "MAX_CONNECTION_AGE_GRACE_S", 600.0, "Seconds the calls in flight on such a "
        "connection get to finish before it is closed.", "600", None, False),
}


def server_setting(prefix: str, name: str, default: Any = None) -> Any:
    """The setting `name` of a gRPC service, read from <prefix>_<SUFFIX>."""
    suffix, shared_default, meaning, example, parse, secret = _SETTINGS[name]
    return setting(f"{prefix}_{suffix}", shared_default if default is None else default,
                   meaning.replace("{p}", prefix), example, parse, secret)


def check_server_settings(config: Any, prefix: str) -> None:
    """The checks that span fields, for a Config's __post_init__."""
    require(bool(config.tls_cert) == bool(config.tls_key), f"{prefix}_TLS_KEY",
            f"{prefix}_TLS_CERT and {prefix}_TLS_KEY go together", "/etc/hitl/tls/tls.key")
    require(not config.tls_client_ca or bool(config.tls_cert), f"{prefix}_TLS_CLIENT_CA",
            f"mutual TLS needs {prefix}_TLS_CERT and {prefix}_TLS_KEY too",
            "/etc/hitl/tls/ca.crt")
    require(config.max_concurrent_rpcs >= 0, f"{prefix}_MAX_CONCURRENT_RPCS",
            "must be >= 0 (0: no limit)", "1000")
    require(config.max_connection_age_s >= 0 and config.max_connection_age_grace_s >= 0,
            f"{prefix}_MAX_CONNECTION_AGE_S", "ages must be >= 0 (0: never)", "300")


def server_options(config: Any, prefix: str,
                   restricted: Mapping[str, frozenset[str]] | None = None) -> ServerOptions:
    """ServerOptions from a service Config whose settings are named <prefix>_HOST,
    <prefix>_CALLER_TOKENS, <prefix>_CALLER_TOKENS_DIR, <prefix>_TLS_*, ..."""
    pairs = list(config.caller_tokens)
    if config.caller_tokens_dir:
        pairs.extend(read_token_dir(config.caller_tokens_dir))
    callers = Callers.from_pairs(pairs)
    if callers.enabled:
        log.info("caller authentication on", extra={"callers": sorted(callers.names)})
    else:
        log.warning(f"no caller tokens configured ({prefix}_CALLER_TOKENS or "
                    f"{prefix}_CALLER_TOKENS_DIR): every caller is accepted; for local "
                    "development only")
    return ServerOptions(
        host=config.host, metrics_host=config.metrics_host,
        access=Access(callers, dict(restricted or {})),
        tls_cert=config.tls_cert, tls_key=config.tls_key, tls_client_ca=config.tls_client_ca,
        reflection=config.reflection, max_concurrent_rpcs=config.max_concurrent_rpcs,
        max_connection_age_s=config.max_connection_age_s,
        max_connection_age_grace_s=config.max_connection_age_grace_s)
