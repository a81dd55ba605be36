"""Real trainer and feature service processes (the `lite` extractor) on street tiles."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from PIL import Image

from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.support import (
    DATA,
    TILES,
    ServiceProcess,
    free_port,
    lite_feature_env,
    require_data,
    require_lite_models,
    running,
    tiles_manifest,
    wait_serving,
)

POS, NEG = common_pb2.LABEL_POSITIVE, common_pb2.LABEL_NEGATIVE
EMBED_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def feature(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_data(TILES)
    require_lite_models()
    tmp = tmp_path_factory.mktemp("feature")
    port = free_port()
    env = lite_feature_env(port, tmp / "cache", LOG_LEVEL="WARNING")
    with running("feature_service", env, tmp / "feature.log", port):
        yield f"127.0.0.1:{port}"


def trainer_env(port: int, data_dir: Path, manifest: Path, feature_addr: str,
                **extra: str) -> dict[str, str]:
    return {"TRAINER_PORT": str(port), "TRAINER_METRICS_PORT": "0",
            "TRAINER_FEATURE_ADDR": feature_addr, "TRAINER_DATASET": str(manifest),
            "TRAINER_DATASET_ROOTS": str(DATA),
            "TRAINER_DATA_DIR": str(data_dir), "TRAINER_VALIDATION_FRACTION": "0.15",
            "TRAINER_EVALUATION_FRACTION": "0.15", "TRAINER_DEBOUNCE_S": "0.5",
            "TRAINER_EMBED_BATCH": "16", **extra}


class Client:
    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = trainer_pb2_grpc.TrainerServiceStub(self.channel)

    async def status(self) -> trainer_pb2.Status:
        return (await self.stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10)).status

    async def lease(self, annotator: str, count: int) -> list[trainer_pb2.Item]:
        reply = await self.stub.GetNextItems(
            trainer_pb2.GetNextItemsRequest(annotator=annotator, count=count), timeout=10)
        return list(reply.items)

    async def annotate(self, item_id: str, label: int, annotator: str = "ann",
                       annotation_id: str | None = None) -> trainer_pb2.AddAnnotationResponse:
        return await self.stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
            annotation_id=annotation_id or uuid.uuid4().hex, item_id=item_id, label=label,
            annotator=annotator, duration_ms=700), timeout=10)

    async def export(self) -> list[trainer_pb2.Annotation]:
        out = []
        async for reply in self.stub.ExportLabels(
                trainer_pb2.ExportLabelsRequest(include_undone=True), timeout=30):
            out.extend(reply.annotations)
        return out

    async def wait_extracted(self, timeout_s: float = EMBED_TIMEOUT_S) -> trainer_pb2.Status:
        deadline = time.monotonic() + timeout_s
        while True:
            status = await self.status()
            if (status.loading.state == trainer_pb2.LOADING_STATE_READY
                    and status.extraction.pending == 0 and status.counts.embedded > 0):
                return status
            assert time.monotonic() < deadline, f"extraction not done: {status.extraction}"
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        await self.channel.close()


@pytest.fixture(scope="module")
def shared_trainer(feature: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[int, dict[str, int]]]:
    tmp = tmp_path_factory.mktemp("trainer")
    truth = tiles_manifest(tmp / "tiles.csv", 30, 70, "t-")
    port = free_port()
    with running("trainer_service", trainer_env(port, tmp / "data", tmp / "tiles.csv", feature),
                 tmp / "trainer.log", port):
        yield port, truth


def label_of(truth: dict[str, int], item_id: str) -> int:
    return POS if truth[item_id] else NEG


async def test_fifty_labels_make_a_model_and_gold_never_trains(
        shared_trainer: tuple[int, dict[str, int]]) -> None:
    port, truth = shared_trainer
    client = Client(port)
    try:
        status = await client.wait_extracted()
        assert (status.counts.pool, status.counts.validation, status.counts.evaluation) == (
            72, 14, 14)
        pool_labels = gold = 0
        while pool_labels < 50:
            items = await client.lease("ann", min(10, 50 - pool_labels + 2))
            assert items, "the trainer ran out of items"
            for item in items:
                if item.strategy == trainer_pb2.STRATEGY_GOLD:
                    # Deliberately wrong answers: had gold reached training, they would
                    # count as labels and teach the opposite.
                    reply = await client.annotate(item.id, NEG if truth[item.id] else POS)
                    assert reply.gold_check.known_label == label_of(truth, item.id)
                    assert not reply.gold_check.agrees
                    gold += 1
                elif pool_labels < 50:
                    reply = await client.annotate(item.id, label_of(truth, item.id))
                    assert reply.annotation.split == trainer_pb2.SPLIT_POOL
                    assert reply.annotation.strategy == item.strategy
                    pool_labels += 1
        assert gold > 0
        retrained = await client.stub.Retrain(trainer_pb2.RetrainRequest(), timeout=120)
        assert retrained.model.labels == 50
        status = await client.status()
        assert status.counts.labelled_positive + status.counts.labelled_negative == 50
        assert (status.counts.gold_checks, status.counts.gold_agreements) == (gold, 0)
        assert status.model.validation.f1 > 0
        assert status.model.validation.positives + status.model.validation.negatives == 14
        assert status.model.evaluation.positives + status.model.evaluation.negatives == 14
        assert len(status.learning_curve) >= 1
        assert status.learning_curve[-1].labels <= 50
        # After a model, items carry its version and model-based strategies.
        items = await client.lease("ann", 10)
        ranked = [i for i in items if i.strategy != trainer_pb2.STRATEGY_GOLD]
        assert ranked and all(i.model_version == status.model.version for i in ranked)
        assert {i.strategy for i in ranked} <= {trainer_pb2.STRATEGY_UNCERTAIN,
                                                trainer_pb2.STRATEGY_RANDOM,
                                                trainer_pb2.STRATEGY_OUTLIER}
    finally:
        await client.close()


async def test_bad_requests_get_clear_errors_and_retries_are_idempotent(
        shared_trainer: tuple[int, dict[str, int]]) -> None:
    port, truth = shared_trainer
    client = Client(port)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.annotate("no-such-item", POS)
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED  # never served
        item_id = next(iter(truth))
        for bad in (common_pb2.LABEL_UNSPECIFIED, 7):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await client.annotate(item_id, bad)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.annotate(item_id, POS, annotation_id="x" * 10_000)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "annotation_id" in (error.value.details() or "")
        [item] = await client.lease("idem", 1)
        before = len(await client.export())
        first = await client.annotate(item.id, POS, annotator="idem", annotation_id="same-id")
        again = await client.annotate(item.id, NEG, annotator="idem", annotation_id="same-id")
        assert (first.duplicate, again.duplicate) == (False, True)
        assert again.annotation.label == POS
        exported = await client.export()
        assert len(exported) == before + 1
        assert [a.annotation_id for a in exported].count("same-id") == 1
        undone = await client.stub.UndoAnnotation(trainer_pb2.UndoAnnotationRequest(
            annotation_id="same-id", annotator="idem"))
        assert undone.annotation.undone
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.stub.UndoAnnotation(trainer_pb2.UndoAnnotationRequest(
                annotation_id="never-made", annotator="idem"))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        image = await client.stub.GetImage(trainer_pb2.GetImageRequest(item_id=item.id,
                                                                       thumbnail=True))
        assert image.content_type == "image/jpeg" and image.data[:2] == b"\xff\xd8"
    finally:
        await client.close()


async def test_two_annotators_never_hold_the_same_item(
        shared_trainer: tuple[int, dict[str, int]]) -> None:
    port, _ = shared_trainer
    clients = [Client(port), Client(port)]
    try:
        rounds = await asyncio.gather(*(c.lease(name, 3) for _ in range(4)
                                        for c, name in zip(clients, ("alice", "bob"), strict=True)))
        by_annotator: dict[int, list[str]] = {0: [], 1: []}
        for k, items in enumerate(rounds):
            by_annotator[k % 2].extend(i.id for i in items)
        alice, bob = by_annotator[0], by_annotator[1]
        assert alice and bob
        assert len(set(alice)) == len(alice) and len(set(bob)) == len(bob)
        assert not set(alice) & set(bob)
    finally:
        for c in clients:
            await c.close()


async def test_sigkill_during_annotations_loses_nothing_acknowledged(
        feature: str, tmp_path: Path) -> None:
    # Fresh ids: the feature cache has none of them, so extractions are still pending
    # when the trainer dies.
    truth = tiles_manifest(tmp_path / "tiles.csv", 20, 40, "k-")
    port = free_port()
    # No reviews or rechecks: each item is answered once, so labels in force = answers.
    env = trainer_env(port, tmp_path / "data", tmp_path / "tiles.csv", feature,
                      TRAINER_VALIDATION_FRACTION="0", TRAINER_EVALUATION_FRACTION="0",
                      TRAINER_REVIEW_SHARE="0", TRAINER_RECHECK_SHARE="0")
    trainer = ServiceProcess("trainer_service", env, tmp_path / "trainer.log").start()
    acknowledged: list[str] = []
    try:
        wait_serving(port, trainer.popen, timeout=120)
        client = Client(port)

        async def annotate_stream(worker: int) -> None:
            while True:
                try:
                    leased = await client.lease(f"w{worker}", 2)
                    for item in leased:
                        annotation_id = f"w{worker}-{item.id}"
                        await client.annotate(item.id, label_of(truth, item.id),
                                              annotator=f"w{worker}",
                                              annotation_id=annotation_id)
                        acknowledged.append(annotation_id)
                        await asyncio.sleep(0.01)
                except grpc.aio.AioRpcError:
                    return
                if not leased:
                    return

        stream = asyncio.gather(*(annotate_stream(w) for w in range(6)))
        while len(acknowledged) < 20:
            await asyncio.sleep(0.005)
        trainer.signal(signal.SIGKILL)
        await stream
        await client.close()
        trainer.popen.wait()
        assert 20 <= len(acknowledged) < len(truth)

        trainer = ServiceProcess("trainer_service", env, tmp_path / "trainer.log").start()
        wait_serving(port, trainer.popen, timeout=120)
        client = Client(port)
        exported = [a.annotation_id for a in await client.export()]
        assert len(exported) == len(set(exported))  # exactly once
        assert set(acknowledged) <= set(exported)
        # Retrying what was in flight at the kill is harmless.
        for annotation_id in exported:
            worker, item_id = annotation_id.split("-", 1)
            reply = await client.annotate(item_id, label_of(truth, item_id),
                                          annotator=worker, annotation_id=annotation_id)
            assert reply.duplicate
        # The extractions of every labelled item complete after the restart.
        status = await client.wait_extracted()
        labelled = (status.counts.labelled_positive + status.counts.labelled_negative
                    + status.counts.audit_labels)
        assert labelled == len(exported)
        retrained = await client.stub.Retrain(trainer_pb2.RetrainRequest(), timeout=120)
        assert retrained.model.labels == labelled
        curve_before = list((await client.status()).learning_curve)
        await client.close()
        assert trainer.stop() == 0
        # The newest model is loaded at start, and not trained again for nothing.
        trainer = ServiceProcess("trainer_service", env, tmp_path / "trainer.log").start()
        wait_serving(port, trainer.popen, timeout=120)
        client = Client(port)
        await asyncio.sleep(1.5)  # past the debounce
        status = await client.status()
        assert status.model.version == retrained.model.version
        # One curve point per model trained (adopted or not), none added by the restart.
        assert retrained.model.version in [p.model_version for p in status.learning_curve]
        assert len(status.learning_curve) == len(curve_before)
        await client.close()
    finally:
        trainer.kill()


async def test_annotations_succeed_while_the_feature_service_is_down(tmp_path: Path) -> None:
    require_data(TILES)
    truth = tiles_manifest(tmp_path / "tiles.csv", 5, 15, "d-")
    port = free_port()
    env = trainer_env(port, tmp_path / "data", tmp_path / "tiles.csv",
                      f"127.0.0.1:{free_port()}")
    with running("trainer_service", env, tmp_path / "trainer.log", port):
        client = Client(port)
        items = await client.lease("ann", 5)
        assert len(items) == 5
        for item in items:
            reply = await client.annotate(item.id, label_of(truth, item.id))
            assert not reply.duplicate
        status = await client.status()
        assert status.extraction.pending > 0 and status.extraction.eta_seconds == -1
        assert len(await client.export()) == 5
        await client.close()


async def test_status_is_pushed_and_datasets_can_be_imported(
        shared_trainer: tuple[int, dict[str, int]], tmp_path: Path) -> None:
    port, _ = shared_trainer
    client = Client(port)
    try:
        watch = client.stub.WatchStatus(trainer_pb2.WatchStatusRequest(), timeout=60)
        first = (await watch.read()).status
        assert first.label_id == "/m/0199g" and first.target_f1 == 0.85
        folder = tmp_path / "more"
        folder.mkdir()
        for k in range(3):
            Image.new("RGB", (40, 40), (k * 80, 10, 10)).save(folder / f"extra{k}.jpg")
        progress = [r.progress async for r in client.stub.ImportDataset(
            trainer_pb2.ImportDatasetRequest(kind=trainer_pb2.DATASET_KIND_FOLDER,
                                             location=str(folder)), timeout=60)]
        assert progress[-1].state == trainer_pb2.LOADING_STATE_READY
        pushed = (await watch.read()).status
        while pushed.counts.items != first.counts.items + 3:
            pushed = (await watch.read()).status
        watch.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            async for _ in client.stub.ImportDataset(trainer_pb2.ImportDatasetRequest(
                    kind=trainer_pb2.DATASET_KIND_MANIFEST, location=str(tmp_path / "no.csv"))):
                pass
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await client.close()
