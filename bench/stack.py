"""Real service processes for benchmarks: start `python -m <module>` on free loopback
ports, wait until healthy, read their peak memory, stop them with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hitl.probes import free_port, grpc_serving, http_ok

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 300.0


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident memory (VmHWM), or None when it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@dataclass
class Service:
    """One service process; `port` is its gRPC or HTTP port."""

    name: str
    module: str
    port: int
    env: dict[str, str]
    log_path: Path
    http_health: str | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)
    peak_mib: float | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.popen = subprocess.Popen(
            [sys.executable, "-m", self.module], cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def healthy(self) -> bool:
        if self.http_health is not None:
            return http_ok(self.http_health)
        return grpc_serving(self.port)

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        assert self.popen is not None, "start() first"
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode} "
                                   f"before serving; log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not healthy after {timeout:.0f}s; "
                                   f"log tail:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 30.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            # Read before the exit: /proc disappears with the process.
            self.peak_mib = peak_rss_mib(self.popen.pid)
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def feature_service(state: Path, cache_dir: Path, extractor: str = "lite") -> Service:
    port = free_port()
    return Service("feature", "feature_service", port, {
        "FEATURE_PORT": str(port),
        "FEATURE_METRICS_PORT": "0",
        "FEATURE_EXTRACTOR": extractor,
        "FEATURE_DEVICE": "cpu",
        "FEATURE_CACHE_DIR": str(cache_dir),
        "FEATURE_MODELS_DIR": str(ROOT / ".models"),
        "LOG_LEVEL": "WARNING",
    }, state / "logs" / "feature.log")


def trainer_service(state: Path, data_dir: Path, feature_addr: str, manifest: Path,
                    extra_env: dict[str, str] | None = None, name: str = "trainer") -> Service:
    port = free_port()
    return Service(name, "trainer_service", port, {
        "TRAINER_PORT": str(port),
        "TRAINER_METRICS_PORT": "0",
        "TRAINER_FEATURE_ADDR": feature_addr,
        "TRAINER_DATASET": str(manifest),
        "TRAINER_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }, state / "logs" / f"{name}.log")


def gateway(state: Path, trainer_addr: str, feature_addr: str) -> Service:
    port = free_port()
    return Service("gateway", "annotation_gateway", port, {
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": "0",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_TRAINER_ADDR": trainer_addr,
        "GATEWAY_FEATURE_ADDR": feature_addr,
        "LOG_LEVEL": "WARNING",
    }, state / "logs" / "gateway.log", http_health=f"http://127.0.0.1:{port}/healthz")


def missing_modules(*modules: str) -> list[str]:
    """Service packages without a `__main__` in this checkout (not built yet)."""
    return [m for m in modules if not (ROOT / m / "__main__.py").exists()]
