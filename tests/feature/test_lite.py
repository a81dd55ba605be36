"""The feature service as a real process on a real port with the real `lite` models.

Skipped, with the reason, where `make models` has not run or the shared data is absent.
"""

from __future__ import annotations

import concurrent.futures
import csv
import functools
import http.server
import math
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.feature.helpers import encode, gradient
from tests.feature.test_service import BAD_CORPUS, OK, by_data, by_url, outcome, vector_of
from tests.support import (
    PHOTOS,
    ROOT,
    TILES,
    ServiceProcess,
    free_port,
    lite_feature_env,
    require_data,
    require_lite_models,
    running,
)

E = feature_pb2
# The bicycle in dog.jpg (768 x 576), marked by hand, normalised: x1, y1, x2, y2.
DOG_BICYCLE = (127 / 768, 137 / 576, 565 / 768, 420 / 576)


class Service:
    def __init__(self, process: ServiceProcess, port: int, metrics_port: int) -> None:
        self.process, self.port, self.metrics_port = process, port, metrics_port
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.max_receive_message_length", 64 << 20)])
        self.stub = feature_pb2_grpc.FeatureServiceStub(self.channel)

    def embed(self, *refs: feature_pb2.ImageRef) -> list[feature_pb2.EmbedResult]:
        return list(self.stub.Embed(E.EmbedRequest(images=refs), timeout=120).results)

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0


@pytest.fixture(scope="module")
def lite_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    require_lite_models()
    tmp = tmp_path_factory.mktemp("lite")
    port, metrics_port = free_port(), free_port()
    env = lite_feature_env(port, tmp / "cache", FEATURE_METRICS_PORT=str(metrics_port),
                           FEATURE_DEVICE="cpu", FEATURE_URL_ALLOWLIST="127.0.0.1",
                           FEATURE_MAX_WAIT_MS="50", FEATURE_READ_TIMEOUT_S="3",
                           FEATURE_CALIBRATION_S="4", LOG_LEVEL="WARNING")
    with running("feature_service", env, tmp / "feature.log", port) as process:
        service = Service(process, port, metrics_port)
        yield service
        service.channel.close()
        assert process.popen is not None and process.popen.poll() is None, process.log()


@pytest.fixture(scope="module")
def photo_server() -> Iterator[str]:
    """A plain local HTTP server over the shared photos, on 127.0.0.1."""
    require_data(PHOTOS)
    handler = functools.partial(QuietHandler, directory=str(PHOTOS))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def negative_tiles(source_class: str, count: int) -> list[Path]:
    require_data(TILES)
    with (TILES / "labels.csv").open() as f:
        rows = [r for r in csv.DictReader(f)
                if r["label"] == "0" and r["source_class"] == source_class]
    return [TILES / r["filename"] for r in rows[:count]]


def test_describe_reports_lite(lite_service: Service) -> None:
    info = lite_service.stub.Describe(E.DescribeRequest(), timeout=10).extractor
    assert (info.name, info.embedding_dimension, info.evidence_dimension) == ("lite", 1280, 10)
    assert info.version and info.device == "cpu"


def test_describe_reports_the_settings_measured_at_start(lite_service: Service) -> None:
    """The service timed its candidates on synthetic images before serving, with the
    real models in real worker processes, and says what it chose and why."""
    reply = lite_service.stub.Describe(E.DescribeRequest(), timeout=10)
    settings = reply.settings
    assert settings.inference == "workers" and settings.workers >= 1
    assert settings.precision in ("float32", "int8") and settings.max_batch >= 1
    assert settings.sources["max_batch"] == "measured"
    assert settings.sources["workers"] == "measured"
    measured = [row for row in settings.calibration if row.images_per_second > 0]
    assert measured and sum(row.chosen for row in settings.calibration if row.stage == "batch") == 1
    assert settings.measured_images_per_second > 0 and settings.calibration_seconds > 0
    if settings.precision == "int8":
        assert "+int8-" in reply.extractor.version
    assert lite_service.metric("feature_calibrated_images_per_second") > 0


def test_dog_photo_shows_a_bicycle_with_its_box(lite_service: Service,
                                                photo_server: str) -> None:
    (result,) = lite_service.embed(by_url(photo_server + "/dog.jpg", id="dog"))
    evidence = result.features.evidence
    assert evidence.score > 0.5 and evidence.count >= 1
    box = (evidence.box.x1, evidence.box.y1, evidence.box.x2, evidence.box.y2)
    assert iou(box, DOG_BICYCLE) > 0.6, box
    assert vector_of(result)[-10] == pytest.approx(evidence.score)
    # The same image sent as bytes gives the same vector.
    (by_bytes,) = lite_service.embed(by_data((PHOTOS / "dog.jpg").read_bytes()))
    assert by_bytes.features.vector == result.features.vector


def test_street_photos_without_bicycles_score_low(lite_service: Service) -> None:
    paths = negative_tiles("Mountain", 4) + negative_tiles("Crosswalk", 4)
    results = lite_service.embed(*(by_data(p.read_bytes(), id=p.name) for p in paths))
    scores = [r.features.evidence.score for r in results]
    assert all(outcome(r) == OK for r in results)
    assert max(scores) < 0.3, dict(zip([p.name for p in paths], scores, strict=True))


def test_second_call_is_a_cache_hit_with_identical_bytes(lite_service: Service) -> None:
    data = (PHOTOS / "horses.jpg").read_bytes() if PHOTOS.exists() else encode(gradient(), "PNG")
    first, second = (lite_service.embed(by_data(data, id="horses"))[0] for _ in range(2))
    assert not first.features.cached and second.features.cached
    assert first.features.vector == second.features.vector
    looked_up = lite_service.stub.Lookup(E.LookupRequest(ids=["horses"]), timeout=10).results
    assert looked_up[0].features.vector == first.features.vector


def test_bad_input_corpus_and_the_service_keeps_serving(lite_service: Service) -> None:
    results = lite_service.embed(*(by_data(data, id=name) for name, data, _ in BAD_CORPUS))
    assert [(r.id, outcome(r)) for r in results] == [(n, k) for n, _, k in BAD_CORPUS]
    test_describe_reports_lite(lite_service)


def test_concurrent_callers_share_model_batches(lite_service: Service) -> None:
    require_data(TILES)
    paths = negative_tiles("Palm", 24)
    count, total = (lite_service.metric("feature_batch_size_count"),
                    lite_service.metric("feature_batch_size_sum"))
    with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
        results = list(pool.map(lambda p: lite_service.embed(by_data(p.read_bytes()))[0],
                                paths))
    assert all(outcome(r) == OK for r in results)
    batches = lite_service.metric("feature_batch_size_count") - count
    images = lite_service.metric("feature_batch_size_sum") - total
    assert images == len(paths)
    # Batches as large as the batch size measured fastest at start allows: callers share
    # them where it is above 1 (on a CPU where single images run fastest, each runs alone).
    chosen = lite_service.stub.Describe(E.DescribeRequest(), timeout=10).settings.max_batch
    if chosen > 1:
        # Fewer than half as many batches as callers; with batches of 2, where half is the
        # fewest possible (every batch full), fewer than halfway from one batch a caller.
        fewest = math.ceil(len(paths) / chosen)
        bound = len(paths) / 2 if fewest < len(paths) / 2 else (len(paths) + fewest) / 2
        assert batches < bound, f"{len(paths)} callers in {batches} batches of {chosen}"
    else:
        assert batches == len(paths)


def test_a_batch_of_64_with_one_bad_item(lite_service: Service) -> None:
    paths = negative_tiles("Hydrant", 63)
    refs = [by_data(p.read_bytes(), id=f"b{i}") for i, p in enumerate(paths)]
    refs.insert(40, by_data(b"\xff\xd8\xff\xe0 broken jpeg", id="broken"))
    results = lite_service.embed(*refs)
    assert outcome(results[40]) == "ERROR_KIND_BAD_IMAGE"
    alone = lite_service.embed(*(by_data(p.read_bytes(), id=f"alone-{p.name}")
                                 for p in paths[:3]))
    for got, expected in zip(results[:3], alone, strict=True):
        np.testing.assert_allclose(vector_of(got), vector_of(expected), atol=1e-4)
    assert [outcome(r) for i, r in enumerate(results) if i != 40] == [OK] * 63


@pytest.mark.parametrize(("extractor", "env", "command"), [
    ("lite", {"FEATURE_MODELS_DIR": "{tmp}/no-models"}, "make models"),
    ("resnext50-frcnn", {"TORCH_HOME": "{tmp}/no-torch-home"}, "make weights"),
])
def test_missing_weights_refuse_to_start_with_one_clear_line(
        tmp_path: Path, extractor: str, env: dict[str, str], command: str) -> None:
    import os
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FEATURE_")}
    environ.update({k: v.format(tmp=tmp_path) for k, v in env.items()})
    environ.update({"FEATURE_EXTRACTOR": extractor, "FEATURE_DEVICE": "cpu",
                    "FEATURE_PORT": str(free_port()), "FEATURE_METRICS_PORT": "0",
                    "FEATURE_CACHE_DIR": str(tmp_path / "cache")})
    result = subprocess.run([sys.executable, "-m", "feature_service"], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert command in lines[0] and str(tmp_path) in lines[0], lines[0]
