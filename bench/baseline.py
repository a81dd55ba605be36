"""The one-at-a-time way, as the demo did it: the benchmark's baseline.

Each image is decoded at full size, then both models run in sequence on it alone, in
PyTorch eager mode, with no batching. The models, weights, preprocessing and evidence are
the extractor's own, so the baseline and the service compute the same vectors and the
benchmark compares like with like.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bench.stack import ROOT

BaselineFn = Callable[[Path], np.ndarray]
MODELS = ROOT / ".models"


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 2)


def full_size_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def lite_baseline(models_dir: Path) -> BaselineFn:
    import onnx
    import torch
    from onnx2torch import convert

    from feature_service.extractors.lite import (
        detector_input,
        efficientnet_lite2,
        embedder_input,
        lite_files,
        lite_vectors,
    )
    from feature_service.fetch_models import efficientnet_weights_path

    _, detector_onnx = lite_files(Path(models_dir) / "lite")
    embedder = efficientnet_lite2(efficientnet_weights_path())
    detector = convert(onnx.load(str(detector_onnx))).eval()

    def extract(path: Path) -> np.ndarray:
        image = full_size_rgb(path)
        with torch.inference_mode():
            embedding = embedder(torch.from_numpy(embedder_input(image))[None]).numpy()
            raw_boxes, logits = detector(torch.from_numpy(detector_input(image))[None])
        return lite_vectors(embedding, raw_boxes.numpy(), logits.numpy())[0]

    return extract


def resnext_frcnn_baseline(device: str, untrained: bool = False) -> BaselineFn:
    """float32 and the default memory layout, as the demo ran it, with torch's default
    threads. `untrained` builds the same architectures with random weights: for speed
    measurements only."""
    import torch

    from bench.untrained import untrained_min_size, untrained_resnext_frcnn
    from feature_service.extractors.base import Settings
    from feature_service.extractors.resnext_frcnn import ResNeXtFrcnnExtractor

    plain = Settings("float32", "contiguous", torch.get_num_threads())
    extractor = (untrained_resnext_frcnn(device, untrained_min_size(), plain) if untrained
                 else ResNeXtFrcnnExtractor.pretrained(device, plain))

    def extract(path: Path) -> np.ndarray:
        return extractor.extract([extractor.prepare(full_size_rgb(path))])[0]

    return extract


def load_baseline(name: str, models_dir: Path, device: str = "cpu",
                  untrained: bool = False) -> BaselineFn:
    """`fn(path) -> (dimension,) float32` for the named extractor, one image per call."""
    if name == "lite":
        return lite_baseline(models_dir)
    if name == "resnext50-frcnn":
        return resnext_frcnn_baseline(device, untrained)
    raise ValueError(f"unknown extractor {name!r}")


def measure_baseline(name: str, paths: list[Path], budget_s: float, device: str = "cpu",
                     untrained: bool = False) -> dict:
    """The demo's way, at torch's default thread count and at one thread.

    On a busy 2-core machine the default threads (OpenMP spin-waiting) can be many times
    slower than one thread, so the ratios use the faster of the two: the conservative
    comparison. Each pass stops after `budget_s` (at least 3 images). On a GPU the
    thread count hardly matters, and one pass at the default is measured.
    """
    import torch

    extract = load_baseline(name, MODELS, device, untrained=untrained)
    extract(paths[0])  # first-call costs are not the demo's steady state
    default_threads = torch.get_num_threads()
    rates, cpu = {}, []
    passes = [("default_threads", default_threads)]
    if device == "cpu":
        passes.append(("one_thread", 1))
    for label, threads in passes:
        torch.set_num_threads(threads)
        started, done, cpu_started = time.perf_counter(), 0, time.process_time()
        for path in paths:
            extract(path)
            done += 1
            if done >= 3 and time.perf_counter() - started > budget_s:
                break
        rates[f"baseline_{label}_images_per_s"] = rate(done, time.perf_counter() - started)
        cpu.append((time.process_time() - cpu_started) / done)
    torch.set_num_threads(default_threads)
    rates["baseline_images_per_s"] = max(rates.values())
    # CPU seconds per image of its cheapest pass: what the loop costs without the wait
    # for other processes on a shared machine.
    rates["baseline_cpu_s_per_image"] = round(min(cpu), 4)
    return rates


def around(before: dict, after: dict) -> dict:
    """The baseline measured before and after the service, as one: the mean of each
    figure. A virtual machine's speed drifts by about 10% over minutes; with the service
    timed between two passes of the baseline, a steady drift cancels out of the ratio
    instead of flattering or hurting it by the luck of which side ran first."""
    both = {key: round((before[key] + after[key]) / 2, 4) for key in before}
    both["baseline_before_images_per_s"] = before["baseline_images_per_s"]
    both["baseline_after_images_per_s"] = after["baseline_images_per_s"]
    return both
