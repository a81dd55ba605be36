"""Prometheus metrics of the trainer (served by hitl.metrics on TRAINER_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ANNOTATIONS = Counter("trainer_annotations_total", "Annotations received",
                      ["split", "outcome"])
ACK_SECONDS = Histogram("trainer_annotation_ack_seconds",
                        "From AddAnnotation received to durable",
                        buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
TRAIN_SECONDS = Histogram("trainer_train_seconds", "Time to train one model",
                          buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300))
RANK_SECONDS = Histogram("trainer_rank_seconds", "Time to score and rank the embedded pool",
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))
MODELS = Counter("trainer_models_total", "Models trained", ["adopted"])
PENDING = Gauge("trainer_extractions_pending", "Items waiting for feature extraction")
EMBEDDED = Gauge("trainer_items_embedded", "Items with features")
