"""What every extractor provides.

`extract` gives each image's stored vector: the embedding followed by one row of
EVIDENCE_DIM evidence values for every class the detector knows (`info.classes`, in
order; the layout is `hitl.evidence`'s), so the one cached entry serves every task. The
vector served to callers that do not ask for every class is the embedding and the row of
`info.target_class`, as before. The service decodes images to RGB and prepares them in
worker processes (`preparer`, which travels there), then calls `extract` on batches.
`Settings` say how an extractor computes: precision, memory layout and threads; only the
precision can change the features, and it is part of the extractor's version.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image

from hitl.evidence import (
    COUNT_THRESHOLD,
    EVIDENCE_DIM,
    EVIDENCE_FIELDS,
    DetectorClass,
    evidence_vector,
    stored_dimension,
)

__all__ = ["COUNT_THRESHOLD", "EVIDENCE_DIM", "EVIDENCE_FIELDS", "DetectorClass", "Extractor",
           "ExtractorInfo", "MissingWeightsError", "evidence_vector"]


Prepared = TypeVar("Prepared")


def own_inputs(prepared: list[object], kind: type[Prepared]) -> list[Prepared]:
    """`prepared` as an extractor's own inputs: what its prepare() returned, or an error."""
    items = [p for p in prepared if isinstance(p, kind)]
    if len(items) != len(prepared):
        raise TypeError("extract() takes what this extractor's prepare() returned")
    return items


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
    # Every class the detector knows, in the order of the evidence rows; empty means one
    # row, of `target_class`.
    classes: tuple[DetectorClass, ...] = ()

    @property
    def dimension(self) -> int:
        """Length of the served vector: the embedding and the target class's evidence."""
        return self.embedding_dim + EVIDENCE_DIM

    @property
    def stored_dimension(self) -> int:
        """Length of what `extract` gives and the cache keeps: every class's evidence."""
        return stored_dimension(self.embedding_dim, len(self.classes))

    @property
    def detector_classes(self) -> tuple[DetectorClass, ...]:
        return self.classes or (DetectorClass(self.target_class),)

    @property
    def target_row(self) -> int:
        """The evidence row of `target_class` in a stored vector."""
        return next(i for i, c in enumerate(self.detector_classes)
                    if c.name == self.target_class)


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
        """Batched inference: (len(prepared), info.stored_dimension) float32 vectors."""

    def warm_up(self) -> None:
        """Runs a dummy batch so the first real request is not slow."""
        self.extract([self.prepare(Image.new("RGB", (self.min_side, self.min_side)))])
