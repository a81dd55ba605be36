"""Where `resnext50-frcnn` spends its time, stage by stage, on the street tiles:
`python -m bench.frcnn_stages [--device cuda] [--batches 32,64]`.

Random weights of the same architectures (the pretrained ones need the internet), so the
post-processing, whose cost grows with the boxes that pass the score threshold, is a
lower bound. Each figure is the best of 5 timed runs after one warm-up, in ms per image.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from PIL import Image

from bench.features import tile_set
from feature_service.extractors.resnext_frcnn import ResNeXtFrcnnExtractor


def best_seconds(run: Callable[[], object], device: str, repeats: int = 5) -> float:
    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    run()
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - started)
    return best


def stages(extractor: ResNeXtFrcnnExtractor, images: list[Image.Image]) -> dict:
    device, detector = extractor.device, extractor.detector
    prepared = [extractor.prepare(image) for image in images]
    per_image = {"extract": best_seconds(lambda: extractor.extract(prepared), device)}
    with torch.inference_mode():
        inputs = [p.detector.to(device) for p in prepared]
        batch, _ = detector.transform(inputs)
        features = detector.backbone(batch.tensors)
        proposals, _ = detector.rpn(batch, features)
        per_image |= {
            "detector": best_seconds(lambda: detector(inputs), device),
            "detector_transform": best_seconds(lambda: detector.transform(inputs), device),
            "detector_trunk": best_seconds(lambda: detector.backbone(batch.tensors), device),
            "rpn": best_seconds(lambda: detector.rpn(batch, features), device),
            "box_heads": best_seconds(
                lambda: detector.roi_heads(features, proposals, batch.image_sizes), device),
        }
    per_image["prepare_one_thread"] = best_seconds(
        lambda: [extractor.prepare(image) for image in images], "cpu")
    return {name: round(1e3 * seconds / len(images), 2) for name, seconds in per_image.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.frcnn_stages",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="2", help="comma-separated batch sizes")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32"])
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batches.split(",")]
    paths, _ = tile_set(max(sizes))
    images = [Image.open(p).convert("RGB") for p in paths]
    extractor = ResNeXtFrcnnExtractor.untrained(args.device, precision=args.precision)
    result = {"device": args.device, "version": extractor.info.version,
              "ms_per_image": {size: stages(extractor, images[:size]) for size in sizes}}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
