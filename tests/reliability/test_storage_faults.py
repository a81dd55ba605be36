"""Broken storage under the services: a read-only directory, a corrupt model file and a
dataset file cut off in the middle each give a clear error, and the service keeps doing
what it still can. (LMDB map full is exercised by every test using the shared feature
service, whose map starts at 64 KiB: see test_map_full_grows_and_keeps_every_entry.)"""

from __future__ import annotations

import contextlib
import gzip
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hitl.v1 import common_pb2, feature_pb2, feature_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from tests.reliability import report
from tests.reliability import stack as rs
from tests.reliability.fixtures import MAP_BYTES
from tests.support import MODELS
from tools.supervisor import ServiceProcess


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` as a read-only bind mount: refused writes even for root (file modes are
    not enough when the tests run as root, as in a container)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount a read-only folder here: {mounted.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def exits_with(service: ServiceProcess, timeout: float = 120.0) -> tuple[int, str]:
    """Waits for the process to exit on its own; (exit code, its log)."""
    assert service.popen is not None
    try:
        code = service.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        healthy = service.healthy()
        service.popen.kill()
        service.popen.wait()
        raise AssertionError(f"{service.name} still running after {timeout}s "
                             f"(healthy={healthy}); log:\n{service.log_tail()}") from None
    return code, service.log_tail(6000)


def _embed(address: str, refs: list[feature_pb2.ImageRef]) -> feature_pb2.EmbedResponse:
    with rs.channel(address) as channel:
        return feature_pb2_grpc.FeatureServiceStub(channel).Embed(
            feature_pb2.EmbedRequest(images=refs), timeout=60)


def test_map_full_grows_and_keeps_every_entry(shared_feature, tiles):
    from bench.dataset import read_labelled
    refs = [feature_pb2.ImageRef(id=f"mapfull-{e.id}", data=Path(e.location).read_bytes())
            for e in read_labelled(tiles)[:40]]
    metrics_port = int(shared_feature.env["FEATURE_METRICS_PORT"])
    first = _embed(shared_feature.address, refs)
    after = rs.prometheus(metrics_port)
    with rs.channel(shared_feature.address) as channel:
        again = feature_pb2_grpc.FeatureServiceStub(channel).Lookup(
            feature_pb2.LookupRequest(ids=[r.id for r in refs]), timeout=10)
    report.inputs("LMDB map full (starts at 64 KiB)",
                  f"grown {after['feature_cache_resizes_total']:.0f} times to "
                  f"{after['feature_cache_map_bytes'] / 2**20:.1f} MiB, all cached", len(refs))
    assert all(r.WhichOneof("outcome") == "features" for r in first.results)
    assert after["feature_cache_map_bytes"] > MAP_BYTES
    assert after["feature_cache_resizes_total"] >= 1
    assert [r.features.vector for r in again.results] == [r.features.vector
                                                           for r in first.results]


def test_read_only_directories_stop_the_services_with_a_clear_error(tmp_path, shared_feature,
                                                                   tiles):
    with read_only(tmp_path / "ro-cache") as cache:
        feature = rs.feature_service(tmp_path, cache)
        feature.start()
        code, log = exits_with(feature)
    report.inputs("read-only cache directory", f"feature exit {code}")
    assert code != 0
    assert str(cache) in log and "read-only" in log.lower(), log
    assert "FEATURE_CACHE_DIR" in log and "Traceback" not in log, log

    with read_only(tmp_path / "ro-data") as data:
        trainer = rs.trainer_service(tmp_path, shared_feature.address, tiles)
        trainer.env["TRAINER_DATA_DIR"] = str(data)
        trainer.start()
        code, log = exits_with(trainer)
    report.inputs("read-only data directory", f"trainer exit {code}")
    assert code != 0
    assert str(data) in log and "read-only" in log.lower(), log
    assert "TRAINER_DATA_DIR" in log and "Traceback" not in log, log


def test_a_corrupt_model_file_stops_the_feature_service_with_a_clear_error(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODELS / "lite", models / "lite")
    onnx = next((models / "lite").glob("efficientnet*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 3:len(data) // 3 + 4096] = b"\x5a" * 4096  # same size, garbled
    onnx.write_bytes(bytes(data))
    feature = rs.feature_service(tmp_path, tmp_path / "cache",
                                 FEATURE_MODELS_DIR=str(models))
    feature.start()
    code, log = exits_with(feature)
    report.inputs("corrupt model file (feature)", f"exit {code}")
    assert code != 0
    assert onnx.name in log, log
    assert "Traceback" not in log, "a clear one-line error, not a stack trace:\n" + log


def test_a_corrupt_trainer_model_is_skipped_and_the_trainer_serves(tmp_path, shared_feature,
                                                                   tiles):
    trainer = rs.trainer_service(tmp_path, shared_feature.address, tiles,
                                 TRAINER_MIN_PER_CLASS="2")
    rs.start(trainer)
    rs.wait_status(trainer.address, rs.embedded, what="pool embedded")
    with rs.channel(trainer.address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        items = stub.GetNextItems(trainer_pb2.GetNextItemsRequest(annotator="m", count=12),
                                  timeout=5).items
        for n, item in enumerate(items):
            stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                annotation_id=uuid.uuid4().hex, item_id=item.id, annotator="m",
                label=common_pb2.LABEL_POSITIVE if n % 2 else common_pb2.LABEL_NEGATIVE),
                timeout=5)
        trained = stub.Retrain(trainer_pb2.RetrainRequest(), timeout=60)
    assert trained.model.version
    trainer.stop()
    models = Path(trainer.env["TRAINER_DATA_DIR"]) / "tasks" / "default" / "models"
    weights = models / f"{trained.model.version}.npz"
    weights.write_bytes(weights.read_bytes()[:100])  # cut off mid-file
    (models / "v9999.json").write_text('{"version": "v9999", "adop')  # cut off mid-file
    rs.start(trainer)
    try:
        status = rs.trainer_status(trainer.address)
        with rs.channel(trainer.address) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            more = stub.GetNextItems(trainer_pb2.GetNextItemsRequest(annotator="m", count=2),
                                     timeout=5).items
            again = stub.Retrain(trainer_pb2.RetrainRequest(), timeout=60)
    finally:
        trainer.stop()
    report.inputs("corrupt model file (trainer)", "skipped, retrained")
    assert not status.HasField("model")  # the broken model is not used
    assert len(more) == 2
    assert again.model.version and again.model.version != trained.model.version
    assert "model" in trainer.log_tail(20000) and trained.model.version in trainer.log_tail(20000)


@pytest.mark.parametrize("compressed", [False, True], ids=["csv", "csv.gz"])
def test_a_dataset_file_cut_off_mid_way_gives_a_clear_error(tmp_path, shared_feature, tiles,
                                                            compressed):
    text = tiles.read_text()
    # Cut at a row's start, inside a quoted field that never ends (a bad row in the middle
    # of a file is skipped and counted instead: tests/trainer/test_exposure.py).
    cut = text[:text.rindex("\n", 0, len(text) // 2) + 1] + '"unterminated,quote\n'
    path = tmp_path / ("cut.csv.gz" if compressed else "cut.csv")
    if compressed:
        whole = gzip.compress(text.encode())
        path.write_bytes(whole[:len(whole) // 2])
    else:
        path.write_text(cut)
    trainer = rs.trainer_service(tmp_path, shared_feature.address, path)
    rs.start(trainer)
    try:
        status = rs.wait_status(
            trainer.address,
            lambda s: s.loading.state != trainer_pb2.LOADING_STATE_LOADING, timeout=60,
            what="loading ended")
        with rs.channel(trainer.address) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                    annotation_id=uuid.uuid4().hex, item_id="nothing-here", annotator="t",
                    label=common_pb2.LABEL_POSITIVE), timeout=5)
            # Still answering, with the failure in its status.
            time.sleep(0.5)
            assert rs.trainer_status(trainer.address).loading.state == status.loading.state
    finally:
        trainer.stop()
    report.inputs("dataset file cut off mid-way", f"{path.suffix}: loading failed, serving")
    assert status.loading.state == trainer_pb2.LOADING_STATE_FAILED
    assert path.name in status.loading.message, status.loading.message
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # never served
