"""Prometheus metrics over HTTP, one port per process."""

from __future__ import annotations

import prometheus_client

# Every call but health checks, by method, status code and caller (the configured caller
# names, "anonymous" with authentication off, "unauthenticated" for refused tokens), so
# the label set stays as small as the list of callers.
RPCS = prometheus_client.Counter(
    "grpc_server_handled", "gRPC calls answered, by method, status code and caller",
    ["grpc_method", "grpc_code", "caller"])
# Calls received, by method and caller: with the answered ones, what is under way.
STARTED = prometheus_client.Counter(
    "grpc_server_started", "gRPC calls received, by method and caller",
    ["grpc_method", "caller"])


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> int:
    """Serves /metrics on `addr`:`port` (0 picks a free one) and returns the bound port.
    Each service's <SERVICE>_METRICS_HOST says where: loopback unless told otherwise,
    since the metrics name callers and their traffic."""
    server, _thread = prometheus_client.start_http_server(port, addr=addr)
    return int(server.server_port)
