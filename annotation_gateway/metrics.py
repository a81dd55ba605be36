"""Prometheus metrics of the gateway (served on GATEWAY_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("gateway_http_requests_total", "HTTP requests answered",
                   ["method", "route", "status"])
LATENCY = Histogram("gateway_http_request_seconds", "HTTP request latency", ["route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ANNOTATIONS = Counter("gateway_annotations_total", "Annotations received",
                      ["outcome"])
UNDOS = Counter("gateway_undos_total", "Annotations withdrawn")
LIVE_CLIENTS = Gauge("gateway_live_clients", "Open live status streams")
TRAINER_WATCH_UP = Gauge("gateway_trainer_watch_up",
                         "1 while the trainer's status stream is connected")
