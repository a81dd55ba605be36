"""What the models give the outside world, wired for the servicer: classifications of new
images, the whole dataset's predictions (export, review pages), the scoring job that
embeds what is missing, and the model catalog (list, files, activation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from trainer_service.config import Config
from trainer_service.datasets import Catalog
from trainer_service.domain import Estimate, ScoringProgress
from trainer_service.features.extraction import Extraction
from trainer_service.features.records import Embedded, ExtractorRecord, ImageSource
from trainer_service.features.store import TaskFeatures
from trainer_service.models.training import Training
from trainer_service.outputs.classify import classify, classify_embedded, feature_service
from trainer_service.outputs.model_catalog import ModelCatalog
from trainer_service.outputs.predictions import Predictions
from trainer_service.outputs.records import (
    Classification,
    PredictionBatch,
    PredictionOrder,
    PredictionPage,
)
from trainer_service.outputs.scoring import ScoringJob
from trainer_service.store.labels import LabelLog


class ModelOutputs:
    def __init__(self, config: Config, catalog: Catalog, features: TaskFeatures,
                 training: Training, labels: LabelLog, extraction: Extraction, *,
                 estimate: Callable[[str], Estimate | None],
                 on_features: Callable[[list[str]], None],
                 notify: Callable[[], None]) -> None:
        self.config, self.training, self.extraction = config, training, extraction
        self.features = features
        self.predictions = Predictions(catalog, features, training, labels)
        task = {"label_id": config.label_id, "display_name": config.display_name}
        self.models = ModelCatalog(training, features, task, estimate)
        self.scoring = ScoringJob(
            catalog, features, extraction.stub, features.task, batch=config.embed_batch,
            deadline_s=config.embed_deadline_s, score=self._score_all,
            on_features=on_features, notify=notify)

    async def classify(self, images: list[ImageSource]
                       ) -> tuple[list[Classification], str, float]:
        """(one result per image, the model's version, its threshold)."""
        model, info = self.training.model, self.training.model_info
        embed = feature_service(self.extraction.stub, self.config.embed_deadline_s,
                                self.features.task)
        results = await classify(images, model, info, embed, self.config.max_classify)
        assert model is not None and info is not None  # classify refuses to work without
        return results, info.version, model.threshold

    def classify_embedded(self, extractor: ExtractorRecord, embedded: list[Embedded]
                          ) -> tuple[list[Classification], str, float]:
        """The same for images a client had the feature service embed."""
        model, info = self.training.model, self.training.model_info
        results = classify_embedded(extractor, embedded, model, info, self.config.max_classify)
        assert model is not None and info is not None
        return results, info.version, model.threshold

    async def prediction_batches(self) -> Iterator[PredictionBatch]:
        return self.predictions.batches(await self.predictions.scores())

    async def prediction_page(self, order: PredictionOrder, page_size: int,
                              page_token: str) -> PredictionPage:
        return self.predictions.page(await self.predictions.scores(), order, page_size,
                                     page_token)

    async def _score_all(self) -> int | None:
        """Items scored, or None without a model to score with."""
        if self.training.model is None:
            return None
        return len((await self.predictions.scores()).ids)

    def score_dataset(self) -> ScoringProgress:
        return self.scoring.start()

    async def close(self) -> None:
        await self.scoring.close()
