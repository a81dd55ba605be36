"""Real services for the prediction tests: a lite feature service that may fetch from
loopback (so that classification by URL reaches a local image server), a trainer on
1,100 street tiles with a model trained on their true labels, and the shared photos."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.gateway.conftest import Gateway, Manifest, TrainerProcess
from tests.support import (
    PHOTOS,
    free_port,
    lite_feature_env,
    require_data,
    require_lite_models,
    running,
    tiles_manifest,
)
from tests.trainer.httpserver import FileServer

# 1,100 tiles: the model file is checked on 1,000 of them; about a quarter bicycles.
POSITIVES, NEGATIVES = 300, 800
# Pool items the trainer embeds by itself: the scoring job has the rest to do.
PREFETCH = 300
TRAINING_LABELS = 100


@dataclass
class Feature:
    addr: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def predict_feature(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Feature]:
    require_lite_models()
    require_data(PHOTOS)
    state = tmp_path_factory.mktemp("predict-feature")
    port = free_port()
    # INFO: every call is logged with its method, which shows how the trainer calls it.
    env = lite_feature_env(port, state / "cache", FEATURE_URL_ALLOWLIST="127.0.0.1",
                           LOG_LEVEL="INFO")
    with running("feature_service", env, state / "feature.log", port) as service:
        yield Feature(f"127.0.0.1:{port}", service.log_path)


@pytest.fixture(scope="session")
def photo_urls() -> Iterator[str]:
    """The shared photos over HTTP on loopback."""
    require_data(PHOTOS)
    with FileServer(PHOTOS).serve() as base:
        yield base


def labelled_tiles(path: Path, positives: int = POSITIVES,
                   negatives: int = NEGATIVES) -> Manifest:
    return Manifest(path, tiles_manifest(path, positives, negatives))


def train_on_truth(trainer: TrainerProcess, truth: dict[str, int], labels: int,
                   annotator: str = "truth") -> trainer_pb2.RetrainResponse:
    """Answers `labels` leased items with their true labels, then trains now."""
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        done = 0
        while done < labels:
            items = stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
                annotator=annotator, count=min(25, labels - done)), timeout=10).items
            assert items, "the trainer ran out of items to lease"
            for item in items:
                stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                    annotation_id=uuid.uuid4().hex, item_id=item.id, annotator=annotator,
                    label=common_pb2.LABEL_POSITIVE if truth[item.id] else
                    common_pb2.LABEL_NEGATIVE), timeout=10)
                done += 1
        return stub.Retrain(trainer_pb2.RetrainRequest(), timeout=120)


@pytest.fixture(scope="session")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return labelled_tiles(tmp_path_factory.mktemp("predict-tiles") / "tiles.csv")


@pytest.fixture(scope="session")
def predict_trainer(tmp_path_factory: pytest.TempPathFactory, predict_feature: Feature,
                    tiles: Manifest) -> Iterator[TrainerProcess]:
    """A trainer whose model was trained on true labels of the tiles."""
    trainer = TrainerProcess(tmp_path_factory.mktemp("predict-trainer"), predict_feature.addr,
                             tiles,
                             {"TRAINER_PREFETCH": str(PREFETCH)}).start()
    try:
        trained = train_on_truth(trainer, tiles.labels, TRAINING_LABELS)
        assert trained.adopted, trained
        yield trainer
    finally:
        trainer.stop()


@pytest.fixture(scope="session")
def predict_gateway(tmp_path_factory: pytest.TempPathFactory, predict_trainer: TrainerProcess,
                    predict_feature: Feature) -> Iterator[Gateway]:
    service = Gateway(tmp_path_factory.mktemp("predict-gateway") / "gateway.log",
                      predict_trainer.addr, predict_feature.addr).start()
    yield service
    service.stop()
