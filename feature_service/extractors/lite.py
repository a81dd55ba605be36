"""`lite`: EfficientNet-Lite2 embedding + Open Images SSD-MobileNetV2 evidence for each of
its 23 classes (`classes.LITE_CLASSES`; Bicycle is the served vector's target class).

Runs offline on a CPU. Both models were converted once to ONNX by `make models`
(feature_service.fetch_models) and run here in ONNX Runtime, which on this class of CPU
is about twice as fast as PyTorch eager for these depthwise-convolution networks, at
every batch size (see the README's performance section). Precision `int8` runs the
statically quantized models `make models` also makes (lite_models.QUANTIZED), where
`python -m bench.precision` accepted them.

Preparation keeps pixels as uint8 (a quarter of the bytes to move between processes);
`extract` normalises a whole batch at once.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from . import base, ssd
from .base import Choices, Extractor, ExtractorInfo, MissingWeightsError, Settings
from .classes import LITE_CLASSES
from .lite_models import (
    EFFICIENTNET_ONNX,
    SSD_ONNX,
    corrupt_files,
    lite_ready,
    lite_version,
    quantized_files,
)

if TYPE_CHECKING:  # only the one-time conversion to ONNX uses torch
    import torch

EMBEDDING_DIM = 1280
EFFICIENTNET_SIZE = 260
# The TensorFlow EfficientNet evaluation crop: the central 260/(260+32) of the image.
EFFICIENTNET_CROP = EFFICIENTNET_SIZE / (EFFICIENTNET_SIZE + 32)


@dataclass(frozen=True)
class LiteInput:
    embedder: np.ndarray  # (260, 260, 3) uint8: the central crop
    detector: np.ndarray  # (300, 300, 3) uint8: the whole image


def embedder_pixels(image: Image.Image) -> np.ndarray:
    """Central crop resized to 260 px (the TensorFlow EfficientNet evaluation crop)."""
    width, height = image.size
    side = min(width, height) * EFFICIENTNET_CROP
    left, top = (width - side) / 2, (height - side) / 2
    crop = image.resize((EFFICIENTNET_SIZE, EFFICIENTNET_SIZE), Image.Resampling.BICUBIC,
                        box=(left, top, left + side, top + side))
    return np.asarray(crop, dtype=np.uint8)


def detector_pixels(image: Image.Image) -> np.ndarray:
    """The whole image stretched to 300x300, so boxes map straight back."""
    resized = image.resize((ssd.INPUT_SIZE, ssd.INPUT_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _planar_float(pixels: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 to a new (N, 3, H, W) float32: transposed while a byte a value,
    then converted once (a quarter of the memory traffic of the other order)."""
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).astype(np.float32)


def embedder_batch(pixels: np.ndarray) -> np.ndarray:
    """(N, 260, 260, 3) uint8 to the embedder's (N, 3, 260, 260) (pixel - 127) / 128."""
    x = _planar_float(pixels)
    x -= 127.0
    x /= 128.0
    return x


def detector_batch(pixels: np.ndarray) -> np.ndarray:
    """(N, 300, 300, 3) uint8 to the detector's (N, 3, 300, 300) in [-1, 1]."""
    x = _planar_float(pixels)
    x /= 127.5
    x -= 1.0
    return x


def embedder_input(image: Image.Image) -> np.ndarray:
    """One image as the embedder takes it, (3, 260, 260) float32."""
    one: np.ndarray = embedder_batch(embedder_pixels(image)[None])[0]
    return one


def detector_input(image: Image.Image) -> np.ndarray:
    """One image as the detector takes it, (3, 300, 300) float32."""
    one: np.ndarray = detector_batch(detector_pixels(image)[None])[0]
    return one


def prepare_lite(image: Image.Image) -> LiteInput:
    if image.mode != "RGB":
        image = image.convert("RGB")
    return LiteInput(embedder_pixels(image), detector_pixels(image))


def lite_vectors(embeddings: np.ndarray, raw_boxes: np.ndarray,
                 logits: np.ndarray) -> np.ndarray:
    """Model outputs for a batch to (N, 1280 + 23 x 10) stored vectors: the embedding,
    then every class's evidence in `LITE_CLASSES` order."""
    evidence = [ssd.every_class_evidence(raw_boxes[i], logits[i]).ravel()
                for i in range(len(embeddings))]
    return np.concatenate([embeddings.astype(np.float32), np.stack(evidence)], axis=1)


def lite_files(lite_dir: Path) -> tuple[Path, Path]:
    """The converted models, or MissingWeightsError saying how to make them."""
    embedder, detector = lite_dir / EFFICIENTNET_ONNX, lite_dir / SSD_ONNX
    for path in (embedder, detector):
        if not path.is_file():
            raise MissingWeightsError(f"lite model file {path} is missing: run `make models` "
                                      "(python -m feature_service.fetch_models lite)")
    for path in corrupt_files(lite_dir):
        raise MissingWeightsError(f"lite model file {path} is corrupt (its sha256 differs from "
                                  "the one recorded when it was converted): delete it and run "
                                  "`make models`")
    if not lite_ready(lite_dir):
        raise MissingWeightsError(f"lite models in {lite_dir} are from another conversion "
                                  "(manifest.json differs): run `make models` again")
    return embedder, detector


def lite_info(device: str = "cpu", version: str = "") -> ExtractorInfo:
    return ExtractorInfo(
        name="lite", version=version or lite_version(), embedding_dim=EMBEDDING_DIM,
        backbone="EfficientNet-Lite2 (ImageNet), 1280-d pooled, ONNX Runtime",
        detector="SSD-MobileNetV2 Open Images v4 (MediaPipe objectron), ONNX Runtime",
        target_class="Bicycle", device=device, classes=LITE_CLASSES)


def lite_choices(lite_dir: Path) -> Choices:
    """float32, and int8 where `make models` quantized the models."""
    return Choices(precisions=("float32", "int8") if quantized_files(lite_dir) else ("float32",))


class LiteExtractor(Extractor):
    # The detector's input side; the embedder's crop is smaller.
    min_side = ssd.INPUT_SIZE

    def __init__(self, lite_dir: Path, settings: Settings | None = None) -> None:
        import onnxruntime as ort

        settings = settings or Settings()
        embedder, detector = lite_files(lite_dir)
        version = lite_version()
        if settings.precision == "int8":
            quantized = quantized_files(lite_dir)
            if quantized is None:
                raise MissingWeightsError(f"no int8 lite models in {lite_dir}: run `make models` "
                                          "(it quantizes them where the street tiles are)")
            embedder, detector, version = quantized
        elif settings.precision != "float32":
            raise ValueError(f"lite runs in float32 or int8, not {settings.precision}")
        self.settings = settings
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads would spin on cores that decoding needs between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        self._embedder = ort.InferenceSession(str(embedder), options, providers=providers)
        self._detector = ort.InferenceSession(str(detector), options, providers=providers)
        self._detector_input = self._detector.get_inputs()[0].name
        self.info = lite_info(version=version)

    def prepare(self, image: Image.Image) -> LiteInput:
        return prepare_lite(image)

    def preparer(self) -> Callable[[Image.Image], LiteInput]:
        return prepare_lite

    def extract(self, prepared: list[object]) -> np.ndarray:
        if not prepared:
            return np.zeros((0, self.info.stored_dimension), np.float32)
        items = base.own_inputs(prepared, LiteInput)
        embeddings = self.embed(embedder_batch(np.stack([p.embedder for p in items])))
        raw_boxes, logits = self.detect(detector_batch(np.stack([p.detector for p in items])))
        return lite_vectors(embeddings, raw_boxes, logits)

    # The two models on their own (bench.lite_stages times them apart).
    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, 260, 260) float32 to (N, 1280) embeddings."""
        embeddings: np.ndarray = self._embedder.run(None, {"image": batch})[0]
        return embeddings

    def detect(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, 300, 300) float32 to the SSD's raw boxes and class logits."""
        raw_boxes, logits = self._detector.run(None, {self._detector_input: batch})
        return raw_boxes, logits


def efficientnet_lite2(weights: Path | None) -> torch.nn.Module:
    """The EfficientNet-Lite2 trunk in PyTorch, returning its 1280-d pooled embedding."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    class Pooled(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features: torch.Tensor = self.net.extract_features(x)  # type: ignore[operator]
            return features.mean(dim=(2, 3))

    if weights is None:
        net = EfficientNet.from_name("efficientnet-lite2")
    else:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained ..."
            net = EfficientNet.from_pretrained("efficientnet-lite2", weights_path=str(weights))
    return Pooled(net).eval()
