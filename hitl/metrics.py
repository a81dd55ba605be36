"""Prometheus metrics over HTTP, one port per process."""

from __future__ import annotations

import prometheus_client


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> int:
    """Serves /metrics on `port` (0 picks a free one) and returns the bound port."""
    server, _thread = prometheus_client.start_http_server(port, addr=addr)
    return int(server.server_port)
