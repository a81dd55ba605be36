"""Prometheus metrics of the feature service (process-wide, like the registry)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram, Info

CACHE_HITS = Counter("feature_cache_hits", "Cache lookups that found an entry.")
CACHE_MISSES = Counter("feature_cache_misses", "Cache lookups that found nothing.")
CACHE_ENTRIES = Gauge("feature_cache_entries", "Entries in the LMDB feature cache.")
CACHE_USED_BYTES = Gauge("feature_cache_used_bytes", "Bytes of the LMDB map in use.")
CACHE_MAP_BYTES = Gauge("feature_cache_map_bytes", "Current LMDB map size.")
CACHE_RESIZES = Counter("feature_cache_resizes", "Times the LMDB map was grown.")
BATCH_SIZE = Histogram("feature_batch_size", "Images per model batch.",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
# Per batch, divided by the batches that can run at once (the workers, or the one
# inference thread), so that its rate is the fraction of the service's capacity in use:
# the HPA's feature_inference_busy_ratio (deploy/k8s/prometheus-adapter/values.yaml).
INFERENCE_SECONDS = Histogram("feature_inference_seconds",
                              "Busy time per batch over the batches that run at once (in "
                              "workers: decoding included).",
                              buckets=(0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30))
ITEMS = Counter("feature_items", "Images answered, by outcome.", ["outcome"])
REFUSED_CALLS = Counter("feature_refused_calls",
                        "Embed calls refused: FEATURE_MAX_INFLIGHT_BYTES were in progress.")
CACHE_EVICTIONS = Counter("feature_cache_evictions",
                          "Oldest entries deleted to keep the cache under FEATURE_CACHE_MAX_BYTES.")
SETTINGS = Info("feature_settings", "The settings in use (precision, memory layout, threads, "
                "batch, workers, inference) and where each came from.")
CALIBRATED_RATE = Gauge("feature_calibrated_images_per_second",
                        "Images/s the chosen settings measured at start (0: not measured).")
CALIBRATION_SECONDS = Gauge("feature_calibration_seconds", "Seconds the calibration took.")


def record_settings(plan: Any, calibration: Any) -> None:
    """The engine's plan and the calibration's sources, as feature_settings_info."""
    settings = plan.settings
    SETTINGS.info({"precision": settings.precision, "memory_layout": settings.layout,
                   "intra_op_threads": str(settings.threads), "max_batch": str(plan.max_batch),
                   "workers": str(plan.workers), "inference": plan.inference,
                   **{f"{k}_source": v for k, v in calibration.sources.items()}})
    CALIBRATED_RATE.set(calibration.images_per_s)
    CALIBRATION_SECONDS.set(calibration.seconds)
