"""Classifying new images with the model in use: their vectors come from the feature
service, each image's failure stays its own, and the probability is the one the model
file gives (`predictions.probabilities`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import numpy as np

from trainer_service.domain import TrainerError
from trainer_service.features.calls import FeatureServiceError, FeatureStub, embed_images
from trainer_service.features.records import (
    Embedded,
    ExtractorRecord,
    ImageError,
    ImageSource,
)
from trainer_service.features.task_evidence import Task
from trainer_service.models.classifier import LinearModel
from trainer_service.models.registry import ModelInfo
from trainer_service.outputs.predictions import decision, probabilities
from trainer_service.outputs.records import Classification

# (images) -> (the extractor that embedded them, one result per image in order)
Embed = Callable[[list[ImageSource]], Awaitable[tuple[ExtractorRecord, list[Embedded]]]]
MAX_ID_CHARS = 256


def feature_service(stub: FeatureStub, deadline_s: float, task: Task) -> Embed:
    """Embedding by the feature service; its failure as a whole is UNAVAILABLE."""

    async def embed(images: list[ImageSource]) -> tuple[ExtractorRecord, list[Embedded]]:
        try:
            return await embed_images(stub, images, deadline_s, task)
        except FeatureServiceError as exc:
            raise TrainerError(grpc.StatusCode.UNAVAILABLE,
                               f"the feature service failed: {exc.code}") from None

    return embed


def _invalid(image: ImageSource) -> ImageError | None:
    if bool(image.url) == bool(image.data):
        return ImageError("INVALID", "give the image as exactly one of url and data", False)
    return None


def _check(ids: list[str], model: LinearModel | None, info: ModelInfo | None,
           limit: int) -> tuple[LinearModel, ModelInfo]:
    if model is None or info is None:
        raise TrainerError(grpc.StatusCode.FAILED_PRECONDITION,
                           "no model yet: label some images of each class first")
    if not ids:
        raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT, "send at least one image")
    if len(ids) > limit:
        raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT, f"at most {limit} images per call")
    if any(len(i) > MAX_ID_CHARS for i in ids):
        raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"ids are at most {MAX_ID_CHARS} characters")
    return model, info


async def classify(images: list[ImageSource], model: LinearModel | None,
                   info: ModelInfo | None, embed: Embed, limit: int) -> list[Classification]:
    """One classification or error per image, in order."""
    model, info = _check([i.id for i in images], model, info, limit)
    results: list[Classification | None] = [
        Classification(i.id, error=bad) if (bad := _invalid(i)) else None for i in images]
    todo = [k for k, r in enumerate(results) if r is None]
    if todo:
        extractor, embedded = await embed([images[k] for k in todo])
        scored = _score([images[k].id for k in todo], extractor, embedded, model, info)
        for k, classification in zip(todo, scored, strict=True):
            results[k] = classification
    return [r for r in results if r is not None]


def classify_embedded(extractor: ExtractorRecord, embedded: list[Embedded],
                      model: LinearModel | None, info: ModelInfo | None,
                      limit: int) -> list[Classification]:
    """One classification or error per image a client had the feature service embed
    (`embedded`, in its order), as `classify` gives for the same images."""
    model, info = _check([e.id for e in embedded], model, info, limit)
    return _score([e.id for e in embedded], extractor, embedded, model, info)


def _score(ids: list[str], extractor: ExtractorRecord, embedded: list[Embedded],
           model: LinearModel, info: ModelInfo) -> list[Classification]:
    if extractor != info.extractor:
        raise TrainerError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"model {info.version} was trained on features of {info.extractor['name']} "
            f"{info.extractor['version']}; the feature service now gives "
            f"{extractor['name']} {extractor['version']}")
    dimension = len(model.weight)
    good = [(k, e.vector) for k, e in enumerate(embedded)
            if e.vector is not None and len(e.vector) == dimension]
    p = probabilities(model, np.stack([v for _, v in good])) if good else np.zeros(0)
    results = [Classification(i, error=e.error or ImageError(
                   "INTERNAL", "feature vector of the wrong length", True))
               for i, e in zip(ids, embedded, strict=True)]
    for (k, _), probability in zip(good, p.tolist(), strict=True):
        results[k] = Classification(ids[k], probability, decision(probability, model.threshold),
                                    info.version, embedded[k].evidence)
    return results
