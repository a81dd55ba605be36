"""Helpers the test tiers share: data location, free ports, and real service processes."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from hitl.probes import (
    free_port,  # noqa: F401 - tests take every helper from here
    grpc_status,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HITL_TEST_DATA", ROOT.parent / "shared" / "data"))
TILES = DATA / "streetview-tiles"
PHOTOS = DATA / "photos"
OPENIMAGES = DATA / "openimages"
MODELS = ROOT / ".models"


def require_data(path: Path = DATA) -> Path:
    """Skips the calling test, with a clear reason, when the shared data is absent."""
    if not path.exists():
        pytest.skip(f"test data not found at {path} (the shared data folder beside the "
                    "checkout; set HITL_TEST_DATA to point elsewhere)")
    return path


def tiles_manifest(path: Path, positives: int, negatives: int,
                   prefix: str = "") -> dict[str, int]:
    """A trainer manifest of real street tiles (the first `positives` bicycles and
    `negatives` others, absolute paths, labelled); returns item id -> 0/1."""
    require_data(TILES)
    with open(TILES / "labels.csv") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["filename"])
    chosen = ([r for r in rows if r["label"] == "1"][:positives]
              + [r for r in rows if r["label"] == "0"][:negatives])
    truth = {}
    with open(path, "w") as f:
        f.write("id,location,label\n")
        for r in chosen:
            item_id = prefix + Path(r["filename"]).stem
            f.write(f"{item_id},{TILES / r['filename']},{r['label']}\n")
            truth[item_id] = int(r["label"])
    return truth


def require_lite_models() -> Path:
    if not (MODELS / "lite").exists():
        pytest.skip(f"lite models not found under {MODELS / 'lite'}: run `make models`")
    return MODELS / "lite"


def health_status(port: int, service: str = "", timeout: float = 2.0,
                  host: str = "127.0.0.1") -> int | None:
    """The standard health protocol's answer, or None when nothing answers."""
    return grpc_status(port, service, timeout, host)


def wait_serving(port: int, proc: subprocess.Popen | None = None, timeout: float = 180.0,
                 service: str = "", host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before serving")
        if health_status(port, service, host=host) == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.2)
    raise TimeoutError(f"port {port} not SERVING after {timeout}s")


class ServiceProcess:
    """`python -m <module>` as a real subprocess, logging to a file."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module, self.log_path = module, log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([sys.executable, "-m", self.module], cwd=ROOT,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


@contextlib.contextmanager
def running(module: str, env: dict[str, str], log_path: Path, port: int,
            timeout: float = 180.0, host: str = "127.0.0.1") -> Iterator[ServiceProcess]:
    """A service process that is SERVING on `host`:`port` for the duration of the block."""
    service = ServiceProcess(module, env, log_path).start()
    try:
        try:
            wait_serving(port, service.proc, timeout, host=host)
        except Exception as exc:
            raise RuntimeError(f"{module} did not become healthy: {exc}\n"
                               f"{service.log()[-4000:]}") from exc
        yield service
    finally:
        service.stop()
