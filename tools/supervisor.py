"""The one process supervisor behind `make run`, the benchmarks and the tests: starts
`python -m <module>` with its environment, logs to a file, waits until it is healthy (the
standard gRPC health check on its port, or an HTTP URL answering 200), reads its peak
memory, and stops it with SIGTERM, then SIGKILL when it does not stop in time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tools.probes import grpc_serving, http_ok

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 300.0


class StartError(RuntimeError):
    """A service exited, or did not become healthy in time; the message ends with the
    tail of its log."""


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


def wait_until(healthy: Callable[[], bool], popen: subprocess.Popen[bytes] | None, timeout: float,
               what: str) -> None:
    """Polls `healthy` until it holds; raises StartError when `popen` exits first or
    `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not healthy():
        if popen is not None and popen.poll() is not None:
            raise StartError(f"{what} exited with {popen.returncode} before serving")
        if time.monotonic() > deadline:
            raise StartError(f"{what} not healthy after {timeout:.0f}s")
        time.sleep(0.2)


@dataclass
class ServiceProcess:
    """One service process. Healthy means: SERVING through the gRPC health protocol on
    `port` (for `health_service`, "" being the whole server), or, when `http_health` is
    set, that URL answering 200; without either, merely running."""

    module: str
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    http_health: str | None = None
    name: str = ""
    health_service: str = ""
    host: str = "127.0.0.1"  # where the gRPC port listens
    # The services resolve relative paths (.models, .run) against their working folder.
    cwd: Path = ROOT
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    peak_mib: float | None = None
    _terminated: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or self.module

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.popen = subprocess.Popen(
            [sys.executable, "-m", self.module], cwd=self.cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._terminated = False
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def healthy(self) -> bool:
        if self.http_health is not None:
            return http_ok(self.http_health)
        if self.port is not None:
            return grpc_serving(self.port, self.health_service, self.host)
        return self.running()

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> ServiceProcess:
        assert self.popen is not None, "start() first"
        try:
            wait_until(self.healthy, self.popen, timeout, self.name)
        except StartError as exc:
            raise StartError(f"{exc}; log tail:\n{self.log_tail()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def signal(self, sig: int) -> None:
        assert self.popen is not None, "start() first"
        self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, as when a node dies."""
        if self.running():
            assert self.popen is not None
            self.popen.kill()
        if self.popen is not None:
            self.popen.wait()

    def terminate(self) -> None:
        """SIGTERM, once. The peak memory is read first: /proc goes with the process."""
        if self.running() and not self._terminated:
            assert self.popen is not None
            self.peak_mib = peak_rss_mib(self.popen.pid)
            self.popen.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait, SIGKILL past `timeout`; the exit code (None if never
        started)."""
        if self.popen is None:
            return None
        self.terminate()
        if self.popen.poll() is None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def stop_all(services: Iterable[ServiceProcess], timeout: float = 60.0) -> None:
    """SIGTERM to every service at once (last started first), then waits for each, so
    their grace periods overlap."""
    services = list(services)
    for service in reversed(services):
        service.terminate()
    for service in reversed(services):
        service.stop(timeout)


@contextlib.contextmanager
def running(service: ServiceProcess,
            timeout: float = START_TIMEOUT_S) -> Iterator[ServiceProcess]:
    """`service` started and healthy for the duration of the block, stopped after it."""
    service.start()
    try:
        service.wait_healthy(timeout)
        yield service
    finally:
        service.stop()
