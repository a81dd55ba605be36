"""The kept models as the outside sees them: the list, one model as a file, and
activation (roll back or forward).

Activating an older model pins it in use (`registry.set_pin`), across restarts. Training
goes on meanwhile: new labels still train new models, which are kept and listed but not
put to use while the pin holds. Activating the newest model removes the pin, and every
model trained from then on is used as soon as it exists again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from trainer_service.domain import Estimate, TrainerError
from trainer_service.features.store import TaskFeatures
from trainer_service.models.registry import ModelInfo, ModelRegistry
from trainer_service.models.training import Training
from trainer_service.outputs.model_files import model_file
from trainer_service.outputs.records import ModelEntry, ModelFile, ModelFormat


class ModelCatalog:
    def __init__(self, training: Training, features: TaskFeatures, task: dict[str, Any],
                 estimate: Callable[[str], Estimate | None]) -> None:
        self.training, self.features, self.task = training, features, task
        self.estimate = estimate

    @property
    def registry(self) -> ModelRegistry:
        return self.training.registry

    def entry(self, info: ModelInfo) -> ModelEntry:
        in_use = self.training.model_info
        return ModelEntry(
            version=info.version, create_time=info.create_time, labels=info.labels,
            positives=info.positives, negatives=info.negatives, validation=info.validation,
            evaluation=info.evaluation, extractor=dict(info.extractor),
            threshold=info.validation.threshold,
            active=in_use is not None and in_use.version == info.version,
            compatible=info.extractor == self.features.extractor,
            estimate=self.estimate(info.version))

    async def entries(self) -> tuple[list[ModelEntry], bool]:
        """(kept models newest first, whether an older model is pinned in use)."""
        history = await asyncio.to_thread(self.registry.history)
        kept = [self.entry(i) for i in reversed(history) if not i.pruned]
        return kept, self.pinned()

    def pinned(self) -> bool:
        return bool(self.registry.holds(self.training.model_info))

    def _kept(self, version: str) -> ModelInfo:
        info = self.registry.info(version)
        if info is None or info.pruned:
            raise TrainerError(grpc.StatusCode.NOT_FOUND, f"no kept model {version!r}")
        return info

    async def file(self, version: str, fmt: ModelFormat) -> ModelFile:
        info = self._kept(version)
        model = await asyncio.to_thread(self.registry.load, info.version)
        if model is None:
            raise TrainerError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"the weights of model {version} cannot be read")
        data, filename, content_type = await asyncio.to_thread(
            model_file, model, info, self.task, fmt)
        return ModelFile(self.entry(info), data, filename, content_type)

    async def activate(self, version: str) -> tuple[ModelEntry, bool]:
        """Puts a kept model to use; returns (its entry, whether it is now pinned)."""
        info = self._kept(version)
        extractor = self.features.extractor
        if info.extractor != extractor:
            raise TrainerError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"model {version} was trained on other features "
                               f"({info.extractor['name']} {info.extractor['version']})")
        model = await asyncio.to_thread(self.registry.load, info.version)
        if model is None:
            raise TrainerError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"the weights of model {version} cannot be read")
        newest = await asyncio.to_thread(self.registry.newest_compatible, extractor)
        pin = newest is None or newest[1].version != version
        await asyncio.to_thread(self.registry.set_pin, version if pin else None)
        training = self.training
        training.model, training.model_info = model, info
        await training.on_adopted()  # the queues are ranked by the model in use
        training.notify()
        return self.entry(info), pin
