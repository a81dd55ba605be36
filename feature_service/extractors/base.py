"""What every extractor provides, and the detector-evidence layout they all share.

A feature vector is the image embedding followed by EVIDENCE_DIM values of detector
evidence for the task's target class (see `evidence_vector`). The service decodes images
to RGB and prepares them in worker processes (`preparer`, which travels there), then
calls `extract` on batches. `Settings` say how an extractor computes: precision, memory
layout and threads; only the precision can change the features, and it is part of the
extractor's version.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

# score, x1, y1, x2, y2, width, height, centre_x, centre_y, count
EVIDENCE_FIELDS = ("score", "x1", "y1", "x2", "y2", "width", "height", "centre_x", "centre_y",
                   "count")
EVIDENCE_DIM = len(EVIDENCE_FIELDS)
COUNT_THRESHOLD = 0.5


class MissingWeightsError(RuntimeError):
    """Pretrained weights are absent; the message names the file and the command to get
    them. The product never falls back to random weights."""


@dataclass(frozen=True)
class Settings:
    """How an extractor computes. precision: float32, bfloat16, float16 or int8 (which
    of them an extractor offers: `Choices`); layout: contiguous or channels_last;
    threads: its intra-op threads; compiled: its convolution trunks through
    torch.compile (torch models; never measured at start, as compiling takes minutes)."""
    precision: str = "float32"
    layout: str = "contiguous"
    threads: int = 1
    compiled: bool = False


@dataclass(frozen=True)
class Choices:
    """What an extractor can run with on a device, the first of each its default:
    precisions, memory layouts and batch sizes, and whether it runs best as one worker
    per core (small models) or as one worker using every core (large ones)."""
    precisions: tuple[str, ...] = ("float32",)
    layouts: tuple[str, ...] = ("contiguous",)
    batches: tuple[int, ...] = (8, 1, 2, 4, 16)
    worker_per_core: bool = True


@dataclass(frozen=True)
class ExtractorInfo:
    name: str
    version: str
    embedding_dim: int
    backbone: str
    detector: str
    target_class: str
    device: str

    @property
    def dimension(self) -> int:
        return self.embedding_dim + EVIDENCE_DIM


def evidence_vector(scores: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Evidence from the target-class detections of one image.

    `scores` (N,) and `boxes` (N, 4: x1, y1, x2, y2 normalised to [0, 1]) must hold only
    detections whose *label* is the target class.
    """
    out = np.zeros(EVIDENCE_DIM, dtype=np.float32)
    if len(scores) == 0:
        return out
    best = int(np.argmax(scores))
    x1, y1, x2, y2 = np.clip(boxes[best], 0.0, 1.0)
    out[:9] = (scores[best], x1, y1, x2, y2, x2 - x1, y2 - y1, (x1 + x2) / 2, (y1 + y2) / 2)
    out[9] = float(np.sum(scores > COUNT_THRESHOLD))
    return out


class Extractor(abc.ABC):
    info: ExtractorInfo
    # Smallest image side the models need; the decoder may draft-decode JPEGs down to it.
    min_side: int

    @abc.abstractmethod
    def prepare(self, image: Image.Image) -> object:
        """CPU preprocessing of one RGB image; thread-safe, runs off the event loop."""

    def preparer(self) -> Callable[[Image.Image], object]:
        """`prepare` as a small picklable callable, for decoding worker processes that do
        not load the models; an extractor whose `prepare` needs no model state may keep
        this default, which only works within this process."""
        return self.prepare

    @abc.abstractmethod
    def extract(self, prepared: list[object]) -> np.ndarray:
        """Batched inference: (len(prepared), info.dimension) float32 feature vectors."""

    def warm_up(self) -> None:
        """Runs a dummy batch so the first real request is not slow."""
        self.extract([self.prepare(Image.new("RGB", (self.min_side, self.min_side)))])
