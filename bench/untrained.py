"""`resnext50-frcnn` with random weights: the same architectures, input sizes and
1,000 region proposals as the pretrained extractor, for speed and memory measurements
where the pretrained weights cannot be fetched (`make weights` needs the internet), and
for tests. Its features mean nothing and its version says "untrained", so they never mix
with real ones. It lives in bench/, out of the product's reach."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from feature_service.extractors.base import Choices, Settings
from feature_service.extractors.resnext_frcnn import (
    DETECTOR_MAX_SIZE,
    DETECTOR_MIN_SIZE,
    ResNeXtFrcnnExtractor,
    resnext_choices,
)


def untrained_min_size() -> int:
    """The detector's input size for the service and baseline measurements of these
    random weights: BENCH_UNTRAINED_MIN_SIZE, where tests set a small one to run the same
    paths in seconds; the pretrained extractor's size otherwise."""
    return int(os.environ.get("BENCH_UNTRAINED_MIN_SIZE", DETECTOR_MIN_SIZE))


def untrained_resnext_frcnn(device: str = "cpu", detector_min_size: int = DETECTOR_MIN_SIZE,
                            settings: Settings | None = None) -> ResNeXtFrcnnExtractor:
    """A small detector_min_size and fewer region proposals (the box head's cost) keep
    tests quick on a CPU."""
    import torch
    from torchvision.models import resnext50_32x4d
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    backbone = resnext50_32x4d(weights=None)
    small = detector_min_size < DETECTOR_MIN_SIZE
    detector = fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=detector_min_size,
        max_size=max(detector_min_size, DETECTOR_MAX_SIZE * detector_min_size
                     // DETECTOR_MIN_SIZE),
        rpn_pre_nms_top_n_test=200 if small else 1000,
        rpn_post_nms_top_n_test=50 if small else 1000)
    return ResNeXtFrcnnExtractor(backbone, detector, device, "untrained", settings)


@dataclass(frozen=True)
class UntrainedBuilder:
    """Builds it in the feature service's worker processes (see workers.Builder)."""
    device: str = "cpu"
    detector_min_size: int = field(default_factory=untrained_min_size)
    name: str = "resnext50-frcnn"

    def __call__(self, settings: Settings) -> ResNeXtFrcnnExtractor:
        return untrained_resnext_frcnn(self.device, self.detector_min_size, settings)

    def choices(self) -> Choices:
        return resnext_choices(self.device)

    def check(self) -> None:
        pass
