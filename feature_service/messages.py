"""The feature service's messages: pipeline results, extractor info and the settings
chosen at start into protobuf, and request images out of it (generated stubs stay here,
at the edge)."""

from __future__ import annotations

from collections.abc import Sequence

from feature_service.calibration import Calibration
from feature_service.extractors.base import ExtractorInfo
from feature_service.outcomes import Kind
from feature_service.pipeline import ImageInput, Result
from feature_service.vector_layout import VectorLayout, describe
from hitl.v1 import feature_pb2

_ERROR_KINDS = {kind: getattr(feature_pb2, "ERROR_KIND_" + kind.name) for kind in Kind}


def extractor_info(info: ExtractorInfo) -> feature_pb2.ExtractorInfo:
    return describe(info)


def compute_settings(calibration: Calibration) -> feature_pb2.ComputeSettings:
    plan = calibration.plan
    return feature_pb2.ComputeSettings(
        precision=plan.settings.precision, memory_layout=plan.settings.layout,
        intra_op_threads=plan.settings.threads, max_batch=plan.max_batch,
        workers=plan.workers, inference=plan.inference, sources=calibration.sources,
        calibration=[feature_pb2.CalibrationRow(
            stage=row.stage, candidate=row.candidate, images_per_second=row.images_per_s,
            chosen=row.chosen) for row in calibration.rows],
        measured_images_per_second=calibration.images_per_s,
        calibration_seconds=calibration.seconds, compiled=plan.settings.compiled)


def fill_result(message: feature_pb2.EmbedResult, result: Result, layout: VectorLayout,
                every_class: bool = False) -> None:
    """Writes `result` into `message` in place (`results.add()`): building submessages
    separately and copying them in costs several times more on large responses.
    `every_class` adds every detector class's evidence."""
    message.id = result.key
    if result.failure is not None:
        failure = result.failure
        error = message.error
        error.kind = _ERROR_KINDS[failure.kind]
        error.message = failure.message
        error.retryable = failure.retryable
        return
    assert result.vector is not None
    features = message.features
    layout.fill(features, result.vector, every_class)
    features.cached = result.cached


def image_inputs(images: Sequence[feature_pb2.ImageRef]) -> list[ImageInput]:
    inputs = []
    for image in images:
        source = image.WhichOneof("source")
        inputs.append(ImageInput(id=image.id,
                                 url=image.url if source == "url" else None,
                                 data=image.data if source == "data" else None))
    return inputs
