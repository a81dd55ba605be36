"""The feature service's messages: pipeline results, extractor info and the settings
chosen at start into protobuf, and request images out of it (generated stubs stay here,
at the edge)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from feature_service.calibration import Calibration
from feature_service.extractors.base import EVIDENCE_DIM, ExtractorInfo
from feature_service.outcomes import Kind
from feature_service.pipeline import ImageInput, Result
from hitl.v1 import feature_pb2

_EVIDENCE = struct.Struct(f"<{EVIDENCE_DIM}f")
_ERROR_KINDS = {kind: getattr(feature_pb2, "ERROR_KIND_" + kind.name) for kind in Kind}


def extractor_info(info: ExtractorInfo) -> feature_pb2.ExtractorInfo:
    return feature_pb2.ExtractorInfo(
        name=info.name, version=info.version, dimension=info.dimension,
        embedding_dimension=info.embedding_dim, evidence_dimension=EVIDENCE_DIM,
        backbone=info.backbone, detector=info.detector, target_class=info.target_class,
        device=info.device)


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


def fill_result(message: feature_pb2.EmbedResult, result: Result) -> None:
    """Writes `result` into `message` in place (`results.add()`): building submessages
    separately and copying them in costs several times more on large responses."""
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
    features.vector = result.vector
    features.cached = result.cached
    score, x1, y1, x2, y2, *_rest, count = _EVIDENCE.unpack_from(
        result.vector, len(result.vector) - _EVIDENCE.size)
    evidence = features.evidence
    evidence.score, evidence.count = score, int(count)
    if score > 0:
        box = evidence.box
        box.x1, box.y1, box.x2, box.y2 = x1, y1, x2, y2


def image_inputs(images: Sequence[feature_pb2.ImageRef]) -> list[ImageInput]:
    inputs = []
    for image in images:
        source = image.WhichOneof("source")
        inputs.append(ImageInput(id=image.id,
                                 url=image.url if source == "url" else None,
                                 data=image.data if source == "data" else None))
    return inputs
