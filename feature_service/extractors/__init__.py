"""The extractors the feature service can be configured with, by name.

    extractor = load_extractor("lite", Path(".models"), "cpu", Settings("int8"))
    vectors = extractor.extract([extractor.prepare(image) for image in images])

`extractor_choices` says which settings an extractor offers on a device: the feature
service measures them at start (feature_service/calibration.py).

Weights are never replaced by random ones: a missing file raises MissingWeightsError,
which names the file and the command that gets it.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    EVIDENCE_DIM,
    EVIDENCE_FIELDS,
    Choices,
    Extractor,
    ExtractorInfo,
    MissingWeightsError,
    Settings,
    evidence_vector,
)

DEFAULT_EXTRACTOR = "resnext50-frcnn"
EXTRACTORS = ("resnext50-frcnn", "lite")

__all__ = ["DEFAULT_EXTRACTOR", "EVIDENCE_DIM", "EVIDENCE_FIELDS", "EXTRACTORS", "Choices",
           "Extractor", "ExtractorInfo", "MissingWeightsError", "Settings", "evidence_vector",
           "extractor_choices", "load_extractor"]


def _known(name: str) -> None:
    if name not in EXTRACTORS:
        raise ValueError(f"unknown extractor {name!r}: choose one of {', '.join(EXTRACTORS)}")


def extractor_choices(name: str, models_dir: Path, device: str) -> Choices:
    """The precisions and layouts `name` can run with on `device` (a resolved one)."""
    _known(name)
    # Imported here so that reading EXTRACTORS does not load torch or onnxruntime.
    if name == "lite":
        from .lite import lite_choices

        return lite_choices(Path(models_dir) / "lite")
    from .resnext_frcnn import resnext_choices

    return resnext_choices(device)


def load_extractor(name: str, models_dir: Path, device: str = "cpu",
                   settings: Settings | None = None) -> Extractor:
    """The named extractor with its pretrained weights, ready for `warm_up`.

    `device` is "cpu" or "cuda[:N]" (runtime.resolve_device turns "auto" into one).
    `lite` always runs on the CPU: it exists for machines without a GPU.
    `resnext50-frcnn` reads its weights from torchvision's cache (TORCH_HOME), not from
    `models_dir`. Without `settings`, each extractor's defaults.
    """
    _known(name)
    if name == "lite":
        from .lite import LiteExtractor

        return LiteExtractor(Path(models_dir) / "lite", settings)
    from .resnext_frcnn import ResNeXtFrcnnExtractor

    return ResNeXtFrcnnExtractor.pretrained(device, settings)
