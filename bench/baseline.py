"""The one-at-a-time way, as the demo did it: the benchmark's baseline.

Each image is decoded at full size, then both models run in sequence on it alone, in
PyTorch eager mode, with no batching. The models, weights, preprocessing and evidence are
the extractor's own, so the baseline and the service compute the same vectors and the
benchmark compares like with like.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

BaselineFn = Callable[[Path], np.ndarray]


def full_size_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def lite_baseline(models_dir: Path) -> BaselineFn:
    import onnx
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
