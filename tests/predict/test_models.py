"""The model list, rollback and roll forward through the gateway against a real trainer:
an activation holds across a restart, new labels after a rollback train models that are
kept but not used until the newest is activated, and old models are pruned past the
configured count (never the one pinned in use)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from hitl.v1 import feature_pb2, trainer_pb2, trainer_pb2_grpc
from tests.gateway.conftest import Manifest, TrainerProcess
from tests.gateway.helpers import CSRF, client, config, error_of, sign_in
from tests.predict.conftest import Feature, labelled_tiles, train_on_truth
from tests.support import PHOTOS

KEEP = 3


@pytest.fixture(scope="module")
def small_tiles(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    # The same tiles as the other prediction tests: the feature cache already has them.
    return labelled_tiles(tmp_path_factory.mktemp("models-tiles") / "tiles.csv", 60, 140)


@pytest.fixture(scope="module")
def models_trainer(tmp_path_factory: pytest.TempPathFactory, predict_feature: Feature,
                   small_tiles: Manifest) -> Iterator[TrainerProcess]:
    trainer = TrainerProcess(tmp_path_factory.mktemp("models-trainer"), predict_feature.addr,
                             small_tiles, {"TRAINER_KEEP_MODELS": str(KEEP),
                                           "TRAINER_DEBOUNCE_S": "600",
                                           "TRAINER_TRAIN_MAX_DELAY_S": "600"}).start()
    yield trainer
    trainer.stop()


def classify_dog(trainer: TrainerProcess) -> str:
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        response = stub.Classify(trainer_pb2.ClassifyRequest(images=[feature_pb2.ImageRef(
            data=(PHOTOS / "dog.jpg").read_bytes())]), timeout=120)
        return response.results[0].classification.model_version


async def models(c) -> dict:  # type: ignore[no-untyped-def]
    r = await c.get("/api/models")
    assert r.status == 200
    return dict(await r.json())


async def test_rollback_holds_across_restarts_and_new_labels_until_rolled_forward(
        models_trainer: TrainerProcess, predict_feature: Feature, small_tiles: Manifest):
    truth = small_tiles.labels
    # Enough labels that both classes reach the minimum whatever the cold start serves.
    assert train_on_truth(models_trainer, truth, 30, "first").model.version == "v0001"
    assert train_on_truth(models_trainer, truth, 20, "second").model.version == "v0002"
    cfg = config(trainer_addr=models_trainer.addr, feature_addr=predict_feature.addr)
    async with client(cfg) as c:
        await sign_in(c)  # model routes and the export need the admin role
        listed = await models(c)
        assert [m["version"] for m in listed["models"]] == ["v0002", "v0001"]
        assert [m["active"] for m in listed["models"]] == [True, False]
        assert listed["pinned"] is False
        first = listed["models"][1]
        assert first["labels"]["total"] == first["labels"]["positive"] + \
            first["labels"]["negative"] > 0
        assert first["create_time"] and first["validation"]["f1"] >= 0

        back = await c.post("/api/models/v0001/activate", headers=CSRF)
        assert back.status == 200, await back.text()
        assert (await back.json())["pinned"] is True
        assert (await models(c))["pinned"] is True
        assert (await (await c.get("/api/predictions")).text()).count(",v0001,") > 0
    assert classify_dog(models_trainer) == "v0001"

    models_trainer.stop()
    models_trainer.start()
    assert classify_dog(models_trainer) == "v0001"  # the rollback survived the restart

    # New labels after the rollback train a new model, which is kept but not used.
    trained = train_on_truth(models_trainer, truth, 15, "third")
    assert trained.adopted is False and trained.model.version == "v0001"
    async with client(cfg) as c:
        await sign_in(c)  # model routes and the export need the admin role
        listed = await models(c)
        assert [m["version"] for m in listed["models"]] == ["v0003", "v0002", "v0001"]
        assert [m["active"] for m in listed["models"]] == [False, False, True]
        # Activating the newest lets every new model be used again.
        forward = await c.post("/api/models/v0003/activate", headers=CSRF)
        assert (await forward.json())["pinned"] is False
    assert classify_dog(models_trainer) == "v0003"
    assert train_on_truth(models_trainer, truth, 10, "fourth").adopted is True


async def test_old_models_are_pruned_but_never_the_pinned_one(
        models_trainer: TrainerProcess, predict_feature: Feature, small_tiles: Manifest):
    cfg = config(trainer_addr=models_trainer.addr, feature_addr=predict_feature.addr)
    async with client(cfg) as c:
        await sign_in(c)  # model routes and the export need the admin role
        oldest = (await models(c))["models"][-1]["version"]
        assert (await c.post(f"/api/models/{oldest}/activate", headers=CSRF)).status == 200
        for k in range(KEEP):
            train_on_truth(models_trainer, small_tiles.labels, 5, f"prune-{k}")
        listed = await models(c)
        versions = [m["version"] for m in listed["models"]]
        assert len(versions) == KEEP and versions[-1] == oldest
        assert listed["models"][-1]["active"] and listed["pinned"]
        # v0001 went once it was no longer pinned, then the oldest unpinned ones.
        assert versions == ["v0007", "v0006", "v0002"] and oldest == "v0002"
        for pruned in ("v0001", "v0003", "v0005"):
            gone = await c.get(f"/api/models/{pruned}")
            assert gone.status == 404 and (await error_of(gone))["code"] == "not_found"
            refused = await c.post(f"/api/models/{pruned}/activate", headers=CSRF)
            assert refused.status == 404
        assert (await c.post("/api/models/v12x/activate", headers=CSRF)).status == 400
        # The learning curve keeps a point for every model, pruned or not.
        curve = (await (await c.get("/api/status")).json())["learning_curve"]
        assert len(curve) > KEEP
