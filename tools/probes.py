"""Is a service up? The standard gRPC health check and a plain HTTP probe, for the tools
that start services (`make run`, the benchmarks, the tests), plus a free loopback port,
and what a running one reports: its Prometheus samples and its resident memory."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def grpc_status(port: int, service: str = "", timeout: float = 1.0,
                host: str = "127.0.0.1") -> int | None:
    """The health protocol's answer for `service` on `host`:`port`, or None when
    nothing answers."""
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            return int(health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout).status)
        except grpc.RpcError:
            return None


def grpc_serving(port: int, service: str = "", host: str = "127.0.0.1") -> bool:
    return grpc_status(port, service, host=host) == int(health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def prometheus(port: int) -> dict[str, float]:
    """The samples of a /metrics page, by name with labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def rss_mib(pid: int) -> float:
    """A process's resident memory now (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
