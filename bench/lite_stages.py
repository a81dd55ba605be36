"""Where the `lite` extractor spends its time, stage by stage on one core, and the most
images/s any service around these models could reach on this machine's cores:
`python -m bench.lite_stages [--count 64] [--batch 2]` (part of `make bench`).

The feature service's worker processes each run one thread and do exactly these stages
for each image: decode, the two resizes, the conversion of pixels to the models' floats,
the embedder, the detector and the evidence of every class. Their sum, per image, over
the cores is a ceiling for the service: it leaves out the service process's receiving,
scheduling and caching, so `bench.features` can only approach it. Against the
one-at-a-time baseline measured in the same run (`bench.baseline.measure_baseline`), it
says whether a ratio target is within reach of the models as they are.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bench.baseline import MODELS, measure_baseline
from bench.features import TILES, tile_set

REPEATS = 5  # best of: load from other processes skews each stage as little as possible


def best_ms_per_image(run: Callable[[], object], images: int) -> float:
    run()  # first-call costs (allocations, kernels chosen) are not the steady state
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return round(best / images * 1e3, 3)


def stage_times(paths: list[Path], batch: int, precision: str) -> dict[str, float]:
    """ms per image of each stage, one thread, in batches of `batch` as the workers run."""
    from feature_service.extractors import lite
    from feature_service.extractors.base import Settings

    extractor = lite.LiteExtractor(MODELS / "lite", Settings(precision, threads=1))
    blobs = [p.read_bytes() for p in paths]

    def decode() -> list[Image.Image]:
        return [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs]

    def to_floats() -> tuple[list[np.ndarray], list[np.ndarray]]:
        return ([lite.embedder_batch(np.stack([p.embedder for p in g])) for g in groups],
                [lite.detector_batch(np.stack([p.detector for p in g])) for g in groups])

    images = decode()
    pixels = [lite.prepare_lite(image) for image in images]
    groups = [pixels[i:i + batch] for i in range(0, len(pixels), batch)]
    embedder_in, detector_in = to_floats()
    detections = [extractor.detect(x) for x in detector_in]
    embeddings = [extractor.embed(x) for x in embedder_in]
    n = len(paths)
    return {
        "decode": best_ms_per_image(decode, n),
        "resize_embedder": best_ms_per_image(
            lambda: [lite.embedder_pixels(i) for i in images], n),
        "resize_detector": best_ms_per_image(
            lambda: [lite.detector_pixels(i) for i in images], n),
        "to_floats": best_ms_per_image(to_floats, n),
        "embedder": best_ms_per_image(lambda: [extractor.embed(x) for x in embedder_in], n),
        "detector": best_ms_per_image(lambda: [extractor.detect(x) for x in detector_in], n),
        "evidence": best_ms_per_image(lambda: [
            lite.lite_vectors(e, *d) for e, d in zip(embeddings, detections, strict=True)], n),
    }


def measure(count: int, batch: int, baseline_s: float) -> dict:
    from feature_service.extractors.lite_models import quantized_files
    from feature_service.extractors.runtime import cpu_threads

    paths, _ = tile_set(count)
    baseline = measure_baseline("lite", paths, baseline_s)
    precision = "int8" if quantized_files(MODELS / "lite") else "float32"
    stages = stage_times(paths, batch, precision)
    per_image_ms = sum(stages.values())
    cores = cpu_threads()
    ceiling = cores * 1e3 / per_image_ms
    return {"images": len(paths), "batch": batch, "precision": precision, "cores": cores,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "ms_per_image_one_thread": stages, "sum_ms_per_image": round(per_image_ms, 2),
            "models_share": round((stages["embedder"] + stages["detector"]) / per_image_ms, 3),
            "ceiling_images_per_s": round(ceiling, 1), **baseline,
            "ceiling_vs_baseline": round(ceiling / baseline["baseline_images_per_s"], 2)}


def run(short: bool) -> dict:
    from feature_service.extractors.lite_models import lite_ready

    if not (TILES / "labels.csv").exists():
        return {"status": "skipped", "reason": f"street tiles not found at {TILES}"}
    if not lite_ready(MODELS / "lite"):
        return {"status": "skipped", "reason": "no lite models: run `make models`"}
    return measure(32 if short else 128, 2, 10.0 if short else 30.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--baseline-s", type=float, default=20.0)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.count, args.batch, args.baseline_s), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
