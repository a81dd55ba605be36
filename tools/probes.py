"""Is a service up? The standard gRPC health check and a plain HTTP probe, for the tools
that start services (`make run`, the benchmarks, the tests), plus a free loopback port."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

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
    return grpc_status(port, service, host=host) == health_pb2.HealthCheckResponse.SERVING


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False
