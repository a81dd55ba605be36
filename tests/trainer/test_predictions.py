"""Predictions over a real feature store and label log: export batches, review pages and
their tokens, the export's row formats, and classification's per-image outcomes."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from hitl import prediction_rows
from hitl.v1 import trainer_pb2
from tests.trainer.test_model import blobs
from trainer_service.config import Config
from trainer_service.datasets import Catalog, Item
from trainer_service.domain import Annotation, Label, Metrics, Split, Strategy, TrainerError
from trainer_service.features.records import Embedded, Evidence, ImageError, ImageSource
from trainer_service.features.store import FeatureStore
from trainer_service.features.task_evidence import Task
from trainer_service.models.classifier import train
from trainer_service.models.registry import ModelInfo
from trainer_service.models.training import Training
from trainer_service.outputs.classify import classify
from trainer_service.outputs.predictions import Predictions, probabilities
from trainer_service.outputs.records import PredictionOrder
from trainer_service.store.database import Database
from trainer_service.store.labels import LabelLog

EXTRACTOR = {"name": "lite", "version": "7", "dimension": 12, "embedding_dimension": 2}


async def setup(tmp_path: Path, n: int = 120) -> tuple[Predictions, Training, LabelLog, np.ndarray]:
    database = Database(tmp_path / "t.sqlite3")
    labels, features = LabelLog(database), FeatureStore(database)
    catalog = Catalog()
    catalog.add(Item(f"i{k:03d}", f"/x/{k}.jpg", Split.POOL if k % 10 else Split.VALIDATION,
                     Label.UNSPECIFIED if k % 10 else Label.POSITIVE) for k in range(n))
    x, y = blobs(n // 3, n - n // 3, d=12)
    await features.use_extractor(EXTRACTOR)
    await features.save([(f"i{k:03d}", x[k].tobytes()) for k in range(n)], [])

    async def adopted() -> None:
        pass

    view = features.view(Task())
    training = Training(Config(), tmp_path / "models", catalog, labels, view,
                        on_adopted=adopted, notify=lambda: None)
    training.model = train(x, y, evidence_dim=0)
    training.model_info = ModelInfo("v0001", EXTRACTOR, n, 0, Metrics(), Metrics())
    return Predictions(catalog, view, training, labels), training, labels, x


async def test_export_batches_cover_every_embedded_item_with_labels(tmp_path: Path) -> None:
    predictions, training, labels, x = await setup(tmp_path)
    await labels.add(Annotation("a1", "i001", Label.NEGATIVE, "ann", Strategy.UNSPECIFIED, "",
                                0, Split.POOL, time.time()))
    scores = await predictions.scores()
    assert await predictions.scores() is scores  # kept while model and features stand
    batches = list(predictions.batches(scores, size=50))
    assert [len(b.item_ids) for b in batches] == [50, 50, 20] and batches[0].total == 120
    ids = [i for b in batches for i in b.item_ids]
    p = np.concatenate([b.probabilities for b in batches])
    assert len(set(ids)) == 120
    assert np.array_equal(p, probabilities(training.model, x))
    row = {i: (b.labels[k], b.known_labels[k], b.splits[k])
           for b in batches for k, i in enumerate(b.item_ids)}
    assert row["i001"] == (Label.NEGATIVE, Label.UNSPECIFIED, Split.POOL)
    assert row["i010"] == (Label.UNSPECIFIED, Label.POSITIVE, Split.VALIDATION)
    training.model_info = ModelInfo("v0002", EXTRACTOR, 1, 0, Metrics(), Metrics())
    assert (await predictions.scores()).model_version == "v0002"  # a new model: rescored


async def test_review_pages_follow_the_order_and_survive_labelling(tmp_path: Path) -> None:
    predictions, _, labels, _ = await setup(tmp_path)
    scores = await predictions.scores()
    pool = {i for i in scores.ids if int(i[1:]) % 10}
    first = predictions.page(scores, PredictionOrder.MOST_LIKELY, 20, "")
    assert first.total == len(pool) == 108 and len(first.items) == 20
    p = [i.probability for i in first.items]
    assert p == sorted(p, reverse=True) and p[0] == max(scores.p[[scores.ids.index(i)
                                                                  for i in pool]])
    assert {i.id for i in first.items} <= pool  # gold items are never shown for review
    # Labelling an item of the next page does not shift it.
    second_before = predictions.page(scores, PredictionOrder.MOST_LIKELY, 20,
                                     first.next_page_token)
    await labels.add(Annotation("a2", second_before.items[0].id, Label.POSITIVE, "ann",
                                Strategy.UNSPECIFIED, "", 0, Split.POOL, time.time()))
    second = predictions.page(scores, PredictionOrder.MOST_LIKELY, 20, first.next_page_token)
    assert [i.id for i in second.items[:19]] == [i.id for i in second_before.items[1:]]
    assert second.total == 107
    # Borderline: nearest to the threshold first; all pages together: every item once.
    seen, token = [], ""
    while True:
        page = predictions.page(scores, PredictionOrder.BORDERLINE, 50, token)
        seen += page.items
        token = page.next_page_token
        if not token:
            break
    margins = [abs(i.probability - 0.5) for i in seen]
    assert margins == sorted(margins) and len({i.id for i in seen}) == len(seen) == 107
    for bad in ("x", "nan:3", "1.0:-4", "inf:1"):
        with pytest.raises(TrainerError) as refused:
            predictions.page(scores, PredictionOrder.BORDERLINE, 10, bad)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(TrainerError):
        predictions.page(scores, PredictionOrder.BORDERLINE, 201, "")


def test_rows_escape_ids_and_read_back() -> None:
    batch = trainer_pb2.ExportPredictionsResponse(
        model_version="v0007", threshold=0.5,
        item_ids=["plain", 'a,"b"\nc', "=cmd()", "é"], probabilities=[0.9, 0.5, 0.1, 0.49999],
        labels=[1, 0, 2, 0], known_labels=[0, 0, 0, 1], splits=[1, 1, 1, 2], total=4)
    text = prediction_rows.csv_header() + prediction_rows.csv_rows(batch)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["item_id"] for r in rows] == ["plain", 'a,"b"\nc', "'=cmd()", "é"]
    assert [r["decision"] for r in rows] == ["positive", "positive", "negative", "negative"]
    assert [(r["labelled"], r["label"]) for r in rows] == [
        ("true", "positive"), ("false", ""), ("true", "negative"), ("false", "")]
    assert rows[3]["known_label"] == "positive" and rows[3]["split"] == "validation"
    assert float(rows[3]["probability"]) == 0.49999 and rows[0]["model_version"] == "v0007"
    lines = [json.loads(line) for line in prediction_rows.jsonl_rows(batch).splitlines()]
    assert lines[1] == {"item_id": 'a,"b"\nc', "probability": 0.5, "decision": "positive",
                        "model_version": "v0007", "labelled": False, "label": None,
                        "known_label": None, "split": "pool"}


async def test_classification_keeps_each_images_outcome_in_order() -> None:
    x, y = blobs(10, 10, d=12)
    model = train(x, y, evidence_dim=0)
    info = ModelInfo("v0004", EXTRACTOR, 20, 0, Metrics(), Metrics())
    sent: list[list[ImageSource]] = []

    async def embed(images: list[ImageSource]) -> tuple[dict, list[Embedded]]:
        sent.append(images)
        bad = ImageError("BAD_IMAGE", "not an image", False)
        return EXTRACTOR, [Embedded("k0", x[0], Evidence(0.9, (0.1, 0.2, 0.3, 0.4), 1)),
                           Embedded("k1", None, error=bad), Embedded("k2", x[-1])]

    images = [ImageSource("a", data=b"1"), ImageSource("empty"), ImageSource("b", url="u"),
              ImageSource("c", data=b"3")]
    results = await classify(images, model, info, embed, limit=8)
    assert [r.id for r in results] == ["a", "empty", "b", "c"]
    assert len(sent[0]) == 3  # the image without a source never left
    assert results[1].error.kind == "INVALID" and results[2].error.kind == "BAD_IMAGE"
    assert results[0].decision == Label.POSITIVE and results[0].evidence.count == 1
    assert results[3].decision == Label.NEGATIVE and results[3].model_version == "v0004"
    assert results[0].probability == pytest.approx(float(probabilities(model, x[:1])[0]))

    async def other_features(images: list[ImageSource]) -> tuple[dict, list[Embedded]]:
        return {**EXTRACTOR, "version": "8"}, [Embedded("k", x[0]) for _ in images]

    refused_by = grpc.StatusCode
    for call, code in [(lambda: classify(images, None, None, embed, 8),
                        refused_by.FAILED_PRECONDITION),
                       (lambda: classify([], model, info, embed, 8), refused_by.INVALID_ARGUMENT),
                       (lambda: classify(images, model, info, embed, 3),
                        refused_by.INVALID_ARGUMENT),
                       (lambda: classify(images, model, info, other_features, 8),
                        refused_by.FAILED_PRECONDITION)]:
        with pytest.raises(TrainerError) as refused:
            await call()
        assert refused.value.code == code


async def test_a_feature_service_that_cannot_be_reached_is_unavailable() -> None:
    from hitl.channels import open_channel
    from hitl.v1 import feature_pb2_grpc
    from tools.probes import free_port
    from trainer_service.features.task_evidence import Task
    from trainer_service.outputs.classify import feature_service

    x, y = blobs(10, 10, d=12)
    model = train(x, y, evidence_dim=0)
    info = ModelInfo("v0001", EXTRACTOR, 20, 0, Metrics(), Metrics())
    channel = open_channel(f"127.0.0.1:{free_port()}", "hitl.v1.FeatureService")
    try:
        embed = feature_service(feature_pb2_grpc.FeatureServiceStub(channel), 2.0, Task())
        with pytest.raises(TrainerError) as refused:
            await classify([ImageSource("a", data=b"x")], model, info, embed, 8)
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        assert "feature service" in str(refused.value)
    finally:
        await channel.close()
