"""Every GPU measurement in one call, in under BUDGET_S: `make bench-gpu`
(`python -m bench.gpu`), for the day a device is lent.

1. The `resnext50-frcnn` extractor alone on the device, batch by batch: the demo's way
   (float32, contiguous) against the reduced precision with channels_last, and that
   again with its convolution trunks compiled (FEATURE_COMPILE), while time remains.
2. The real feature service through gRPC, cold cache, 8 callers (bench/features.py with
   `--device cuda`): decoding in worker processes, one copy of the models in the service
   process, detector evidence post-processed for the whole batch at once, the settings
   measured at start; against the one-at-a-time baseline on the same device.

Random weights stand in where the pretrained ones are absent (speed only). `--device
cpu` runs the same code on the CPU with small counts (tests/bench/test_gpu_bench.py).
Target: 500 images/s for `resnext50-frcnn` through the service on one H200.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from bench import features

BUDGET_S = 280.0
SERVICE_TARGET = 500.0  # images/s through the service on one H200


def _extractor(device: str, settings, min_size: int):  # type: ignore[no-untyped-def]
    from bench.untrained import untrained_resnext_frcnn
    from feature_service.extractors.resnext_frcnn import ResNeXtFrcnnExtractor

    if features.weights_missing("resnext50-frcnn"):
        return untrained_resnext_frcnn(device, min_size, settings)
    return ResNeXtFrcnnExtractor.pretrained(device, settings)


def extractor_alone(device: str, batch: int, seconds: float, deadline: float,
                    count: int = 64, min_size: int = 800, compiled: bool = True) -> list[dict]:
    """Images/s of the extractor alone at `batch`, for each way of computing (the compiled
    one where `compiled`: compiling takes a minute even on a CPU)."""
    from PIL import Image

    from feature_service.extractors.base import Settings
    from feature_service.extractors.runtime import cpu_threads

    threads = cpu_threads()
    low = "float16" if device.startswith("cuda") else "bfloat16"
    ways = [("demo: float32, contiguous", Settings("float32", "contiguous", threads)),
            (f"{low}, channels_last", Settings(low, "channels_last", threads)),
            (f"{low}, channels_last, compiled", Settings(low, "channels_last", threads, True))
            ][:3 if compiled else 2]
    paths, _ = features.tile_set(count)
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    rows = []
    for name, settings in ways:
        if time.monotonic() > deadline:
            rows.append({"way": name, "images_per_s": None, "why": "over the time budget"})
            continue
        extractor = _extractor(device, settings, min_size)
        prepared = [extractor.prepare(image) for image in images]
        extractor.extract(prepared[:batch])  # first calls pay set-up (and compilation)
        done, started = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - started < seconds:
            chunk = [prepared[(done + k) % len(prepared)] for k in range(batch)]
            extractor.extract(chunk)
            done += batch
        rows.append({"way": name, "images_per_s": round(done / (time.perf_counter() - started),
                                                          2)})
        del extractor
    base = rows[0]["images_per_s"]
    for row in rows:
        if row["images_per_s"] and base:
            row["vs_demo"] = round(row["images_per_s"] / base, 2)
    return rows


def run(short: bool = False, device: str = "cuda", batch: int = 64,
        seconds: float = 15.0) -> dict:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return {"status": "skipped", "reason": "no CUDA device here"}
    started = time.monotonic()
    deadline = started + BUDGET_S * 0.4
    result: dict = {"device": device, "load_average_1m": round(os.getloadavg()[0], 2),
                    "extractor_alone": extractor_alone(device, batch, seconds, deadline)}
    service = features.measure("resnext50-frcnn", short, device)
    result["service"] = service
    result["service_target_images_per_s"] = SERVICE_TARGET if device == "cuda" else None
    result["seconds"] = round(time.monotonic() - started, 1)
    result["within_budget"] = result["seconds"] < BUDGET_S + 20
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.short, args.device)
    print(json.dumps(result, indent=2, default=lambda v: float(np.asarray(v))))
    if "service" in result:
        print()
        print(features.markdown({"extractors": {"resnext50-frcnn": result["service"]}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
