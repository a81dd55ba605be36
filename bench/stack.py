"""The benchmarks' service processes: feature, trainer and gateway on free loopback ports,
quiet logs, as named helpers around the one supervisor (tools/supervisor.py)."""

from __future__ import annotations

from pathlib import Path

from tools.probes import free_port
from tools.supervisor import ROOT, ServiceProcess, peak_rss_mib

__all__ = ["ROOT", "feature_service", "free_port", "gateway", "missing_modules",
           "peak_rss_mib", "trainer_service"]


def feature_service(state: Path, cache_dir: Path, extractor: str = "lite") -> ServiceProcess:
    port = free_port()
    return ServiceProcess("feature_service", {
        "FEATURE_PORT": str(port),
        "FEATURE_METRICS_PORT": "0",
        "FEATURE_EXTRACTOR": extractor,
        "FEATURE_DEVICE": "cpu",
        "FEATURE_CACHE_DIR": str(cache_dir),
        "FEATURE_MODELS_DIR": str(ROOT / ".models"),
        "LOG_LEVEL": "WARNING",
    }, state / "logs" / "feature.log", port=port, name="feature")


def trainer_service(state: Path, data_dir: Path, feature_addr: str, manifest: Path,
                    extra_env: dict[str, str] | None = None,
                    name: str = "trainer") -> ServiceProcess:
    port = free_port()
    return ServiceProcess("trainer_service", {
        "TRAINER_PORT": str(port),
        "TRAINER_METRICS_PORT": "0",
        "TRAINER_FEATURE_ADDR": feature_addr,
        "TRAINER_DATASET": str(manifest),
        "TRAINER_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }, state / "logs" / f"{name}.log", port=port, name=name)


def gateway(state: Path, trainer_addr: str, feature_addr: str) -> ServiceProcess:
    port = free_port()
    return ServiceProcess("annotation_gateway", {
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": "0",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_TRAINER_ADDR": trainer_addr,
        "GATEWAY_FEATURE_ADDR": feature_addr,
        # Simulated annotators lease many times a second, far past what a person needs
        # and the default limit allows.
        "GATEWAY_LEASE_RATE": "off",
        "LOG_LEVEL": "WARNING",
    }, state / "logs" / "gateway.log", port=port, name="gateway",
        http_health=f"http://127.0.0.1:{port}/healthz")


def missing_modules(*modules: str) -> list[str]:
    """Service packages without a `__main__` in this checkout (not built yet)."""
    return [m for m in modules if not (ROOT / m / "__main__.py").exists()]
