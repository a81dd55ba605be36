"""`resnext50-frcnn`: ResNeXt50 ImageNet embedding + Faster R-CNN COCO evidence for each of
its 80 classes (`classes.coco_classes`; bicycle is the served vector's target class).

Pretrained weights come only from torchvision's cache (TORCH_HOME, filled by
`make weights`); without them `ResNeXtFrcnnExtractor.pretrained` raises
MissingWeightsError. The benchmarks build the same architectures with random weights
(bench/untrained.py); nothing in configuration reaches that.

Prepared images stay uint8 (a quarter of the bytes to move from a decoding process, or to
a GPU); `extract` scales and normalises them on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image
from torchvision.models import ResNeXt50_32X4D_Weights, resnext50_32x4d
from torchvision.models.detection import (
    FasterRCNN,
    FasterRCNN_ResNet50_FPN_Weights,
    fasterrcnn_resnet50_fpn,
)
from torchvision.transforms import functional as F

from .base import (
    COUNT_THRESHOLD,
    EVIDENCE_DIM,
    Choices,
    Extractor,
    ExtractorInfo,
    MissingWeightsError,
    Settings,
    own_inputs,
)
from .classes import coco_classes
from .runtime import cpu_threads, reduced_dtype

BACKBONE_WEIGHTS = ResNeXt50_32X4D_Weights.IMAGENET1K_V1
DETECTOR_WEIGHTS = FasterRCNN_ResNet50_FPN_Weights.COCO_V1
WEIGHTS = (BACKBONE_WEIGHTS, DETECTOR_WEIGHTS)
COCO_BICYCLE = 2  # category id in torchvision's COCO label list
COCO_CLASSES, COCO_LABEL_IDS = coco_classes(list(DETECTOR_WEIGHTS.meta["categories"]))
EMBEDDING_DIM = 2048
RESIZE, CROP = 256, 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's detection transform scales the shorter side to 800 (longer at most 1333).
DETECTOR_MIN_SIZE, DETECTOR_MAX_SIZE = 800, 1333
VERSION = "tv-resnext50_32x4d-7cdf4587+frcnn_coco-258fb6c6"
DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16"}


def weights_file(weights: ResNeXt50_32X4D_Weights | FasterRCNN_ResNet50_FPN_Weights) -> Path:
    """Where torchvision keeps (or will download) these weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def check_weights() -> None:
    """MissingWeightsError, naming the file and the command, when a weight file is absent."""
    for weights in WEIGHTS:
        path = weights_file(weights)
        if not path.is_file():
            raise MissingWeightsError(
                f"pretrained weights {path} are missing (the torchvision cache under "
                "TORCH_HOME): "
                "run `make weights` (python -m feature_service.fetch_models "
                "resnext50-frcnn) where there is internet, or use the `lite` extractor")


def frcnn_evidence(detections: dict[str, torch.Tensor], width: int, height: int) -> np.ndarray:
    """Every class's evidence (`COCO_CLASSES` order, one row of EVIDENCE_DIM each) from
    one image's Faster R-CNN output, boxes in pixels of a width x height input. Detections
    are chosen by their *label*: the position of a detection in the list says nothing
    about its class."""
    evidence: np.ndarray = evidence_batch([detections], [(width, height)])[0]
    return evidence


def evidence_batch(detections: list[dict[str, torch.Tensor]],
                   sizes: list[tuple[int, int]]) -> np.ndarray:
    """(N, classes x EVIDENCE_DIM) evidence of N images' detections (sizes: width,
    height), every class's row as `hitl.evidence.evidence_vector` computes it, on the
    detections' device with one transfer at the end, not one per image (each is a
    synchronisation on a GPU)."""
    width = len(COCO_LABEL_IDS) * EVIDENCE_DIM
    if not detections:
        return np.zeros((0, width), np.float32)
    device = detections[0]["scores"].device
    pad = torch.nn.utils.rnn.pad_sequence
    scores = pad([d["scores"].float() for d in detections], batch_first=True,
                 padding_value=-1.0)
    if scores.shape[1] == 0:
        return np.zeros((len(detections), width), np.float32)
    labels = pad([d["labels"] for d in detections], batch_first=True, padding_value=-1)
    boxes = pad([d["boxes"].float().reshape(-1, 4) for d in detections], batch_first=True)
    scale = torch.tensor([[w, h, w, h] for w, h in sizes], dtype=torch.float32,
                         device=device)
    classes = torch.tensor(COCO_LABEL_IDS, device=device)
    # (N, C, D): each detection's score under the class it is labelled, -1 elsewhere.
    mine = labels[:, None, :] == classes[None, :, None]
    by_class = scores[:, None, :].masked_fill(~mine, -1.0)
    top, best = by_class.max(dim=2)  # (N, C)
    picked = torch.gather(boxes, 1, best[..., None].expand(-1, -1, 4))  # (N, C, 4)
    x1, y1, x2, y2 = (picked / scale[:, None, :]).clamp(0.0, 1.0).unbind(dim=2)
    out = torch.stack([top, x1, y1, x2, y2, x2 - x1, y2 - y1, (x1 + x2) / 2, (y1 + y2) / 2,
                       (by_class > COUNT_THRESHOLD).sum(dim=2).float()], dim=2)
    out[top < 0] = 0.0  # no detection of the class
    return out.reshape(len(detections), width).cpu().numpy().astype(np.float32)


def to_float32(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.float()
    if isinstance(value, dict):
        return type(value)((k, to_float32(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(to_float32(v) for v in value)
    return value


class ReducedPrecision(torch.nn.Module):
    """Runs `inner` under autocast to `dtype` and hands float32 back.

    Only the heavy parts are wrapped (convolution trunks, RPN head, box-head MLP): box
    decoding, NMS and scores stay float32, where bfloat16's 8-bit mantissa would move an
    800 px box corner by up to 4 px.
    """

    def __init__(self, inner: torch.nn.Module, device: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner, self.device_type, self.dtype = inner, device.split(":")[0], dtype

    def forward(self, *args: object) -> object:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return to_float32(self.inner(*args))


def reduce_precision(backbone: torch.nn.Module, detector: FasterRCNN, device: str,
                     dtype: torch.dtype) -> torch.nn.Module:
    """Wraps the parts that hold nearly all the arithmetic; returns the new backbone."""
    detector.backbone = ReducedPrecision(detector.backbone, device, dtype)
    detector.rpn.head = ReducedPrecision(detector.rpn.head, device, dtype)
    detector.roi_heads.box_head = ReducedPrecision(detector.roi_heads.box_head, device, dtype)
    return ReducedPrecision(backbone, device, dtype)


@dataclass(frozen=True)
class ResNeXtFrcnnInput:
    backbone: torch.Tensor  # (3, 224, 224) uint8: the central crop
    detector: torch.Tensor  # (3, H, W) uint8, no larger than the detector would use


def detector_scale(width: int, height: int, min_size: int, max_size: int) -> float:
    return min(min_size / min(width, height), max_size / max(width, height))


def _chw(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class Preparer:
    """An RGB image to ResNeXtFrcnnInput: picklable, so decoding processes need no model."""
    min_size: int = DETECTOR_MIN_SIZE
    max_size: int = DETECTOR_MAX_SIZE

    def __call__(self, image: Image.Image) -> ResNeXtFrcnnInput:
        if image.mode != "RGB":
            image = image.convert("RGB")
        crop = F.center_crop(F.resize(image, RESIZE, antialias=True), [CROP, CROP])
        # The detector rescales anyway; shrinking here first keeps big images small in
        # memory between prepare and extract.
        scale = detector_scale(*image.size, self.min_size, self.max_size)
        if scale < 1:
            image = image.resize((max(1, round(image.width * scale)),
                                  max(1, round(image.height * scale))),
                                 Image.Resampling.BILINEAR)
        return ResNeXtFrcnnInput(_chw(crop), _chw(image))


def resnext_choices(device: str) -> Choices:
    """float16 first on a GPU (what it computes fastest), float32 first on a CPU, where
    the measurement at start decides whether bfloat16 pays."""
    if device.startswith("cuda"):
        return Choices(("float16", "float32", "bfloat16"), ("channels_last", "contiguous"),
                       (32, 8, 16, 64), worker_per_core=False)
    # Each 800 px image in a Faster R-CNN batch adds ~300 MB on a CPU.
    return Choices(("float32", "bfloat16"), ("channels_last", "contiguous"), (1, 2, 4),
                   worker_per_core=False)


def default_settings(device: str) -> Settings:
    choices = resnext_choices(device)
    return Settings(choices.precisions[0], choices.layouts[0],
                    1 if device.startswith("cuda") else cpu_threads())


class ResNeXtFrcnnExtractor(Extractor):
    min_side = DETECTOR_MIN_SIZE

    def __init__(self, backbone: torch.nn.Module, detector: FasterRCNN, device: str,
                 version: str, settings: Settings | None = None) -> None:
        """Precision float16 / bfloat16 runs the convolutions reduced (part of the
        version); float32 with the contiguous layout gives the plain eager model, as the
        demo ran it (the benchmark's baseline)."""
        backbone.fc = torch.nn.Identity()  # the pooled 2048-d embedding, not the 1000 logits
        self.device = device
        self.settings = settings = settings or default_settings(device)
        if not device.startswith("cuda") and torch.get_num_threads() != settings.threads:
            torch.set_num_threads(settings.threads)
        self.channels_last = settings.layout == "channels_last"
        if self.channels_last:  # faster convolutions in cuDNN and oneDNN alike
            backbone = backbone.to(memory_format=torch.channels_last)
            detector = detector.to(memory_format=torch.channels_last)
        self.dtype = reduced_dtype(device, settings.precision)
        if self.dtype is not None:
            backbone = reduce_precision(backbone, detector, device, self.dtype)
            version = f"{version}+{DTYPE_NAMES[self.dtype]}"
        self.backbone = backbone.eval().to(device)
        self.detector = detector.eval().to(device)
        if settings.compiled:
            # The fixed-size embedding trunk and the detector's convolution trunk (the
            # bulk of the arithmetic); the detector's heads have data-dependent shapes.
            self.backbone = torch.compile(self.backbone, dynamic=True)  # type: ignore[assignment]
            self.detector.backbone = torch.compile(
                self.detector.backbone, dynamic=True)
        transform = detector.transform
        self._min_size, self._max_size = int(transform.min_size[0]), int(transform.max_size)
        self.min_side = min(self._min_size, DETECTOR_MIN_SIZE)
        self.info = ExtractorInfo(
            name="resnext50-frcnn", version=version, embedding_dim=EMBEDDING_DIM,
            backbone="torchvision resnext50_32x4d IMAGENET1K_V1, 2048-d pooled",
            detector="torchvision fasterrcnn_resnet50_fpn COCO_V1", target_class="bicycle",
            device=device, classes=COCO_CLASSES)

    @classmethod
    def pretrained(cls, device: str, settings: Settings | None = None
                   ) -> ResNeXtFrcnnExtractor:
        check_weights()
        backbone = resnext50_32x4d(weights=BACKBONE_WEIGHTS)
        detector = fasterrcnn_resnet50_fpn(weights=DETECTOR_WEIGHTS)
        return cls(backbone, detector, device, VERSION, settings)

    def preparer(self) -> Preparer:
        return Preparer(self._min_size, self._max_size)

    def prepare(self, image: Image.Image) -> ResNeXtFrcnnInput:
        return self.preparer()(image)

    def extract(self, prepared: list[object]) -> np.ndarray:
        if not prepared:
            return np.zeros((0, self.info.stored_dimension), np.float32)
        items = own_inputs(prepared, ResNeXtFrcnnInput)
        with torch.inference_mode():
            pixels = torch.stack([p.backbone for p in items]).to(self.device, non_blocking=True)
            batch = F.normalize(pixels.float().div(255), IMAGENET_MEAN, IMAGENET_STD)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            embeddings = self.backbone(batch).float().cpu().numpy()
            evidence = self._detect(items)
        return np.concatenate([embeddings, np.stack(evidence)], axis=1).astype(np.float32)

    def _detect(self, items: list[ResNeXtFrcnnInput]) -> list[np.ndarray]:
        """Evidence per item. The detector pads a batch to its largest image, which shifts
        its output, so only images of one size share a batch: a batch then gives the
        same evidence as one image at a time."""
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, item in enumerate(items):
            by_size.setdefault(tuple(item.detector.shape), []).append(index)
        found: list[dict[str, torch.Tensor]] = [{}] * len(items)
        for indices in by_size.values():
            detections = self.detector([items[i].detector.to(self.device).float().div(255)
                                        for i in indices])
            for i, detection in zip(indices, detections, strict=True):
                found[i] = detection
        sizes = [(item.detector.shape[2], item.detector.shape[1]) for item in items]
        return list(evidence_batch(found, sizes))

