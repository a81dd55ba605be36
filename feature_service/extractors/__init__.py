"""The extractors the feature service can be configured with, by name.

    extractor = load_extractor("lite", Path(".models"))
    vectors = extractor.extract([extractor.prepare(image) for image in images])

Weights are never replaced by random ones: a missing file raises MissingWeightsError,
which names the file and the command that gets it.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    EVIDENCE_DIM,
    EVIDENCE_FIELDS,
    Extractor,
    ExtractorInfo,
    MissingWeightsError,
    evidence_vector,
)

DEFAULT_EXTRACTOR = "resnext50-frcnn"
EXTRACTORS = ("resnext50-frcnn", "lite")

__all__ = ["DEFAULT_EXTRACTOR", "EVIDENCE_DIM", "EVIDENCE_FIELDS", "EXTRACTORS", "Extractor",
           "ExtractorInfo", "MissingWeightsError", "evidence_vector", "load_extractor"]


def load_extractor(name: str, models_dir: Path, device: str = "auto",
                   precision: str = "auto") -> Extractor:
    """The named extractor with its pretrained weights, ready for `warm_up`.

    `device` is "auto" (CUDA when available), "cpu" or "cuda[:N]". `lite` always runs on
    the CPU: it exists for machines without a GPU. `resnext50-frcnn` reads its weights
    from torchvision's cache (TORCH_HOME), not from `models_dir`; `precision` "auto" lets
    it run its convolutions in float16 / bfloat16 where the hardware does so natively.
    """
    # Imported here so that reading EXTRACTORS does not load torch or onnxruntime.
    if name == "lite":
        from .lite import LiteExtractor

        return LiteExtractor(Path(models_dir) / "lite")
    if name == "resnext50-frcnn":
        from .resnext_frcnn import ResNeXtFrcnnExtractor
        from .runtime import resolve_device

        return ResNeXtFrcnnExtractor.pretrained(resolve_device(device), precision)
    raise ValueError(f"unknown extractor {name!r}: choose one of {', '.join(EXTRACTORS)}")
