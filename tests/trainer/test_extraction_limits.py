"""Extraction against a real feature service whose messages are limited to 1 MiB: large
local photos are sent in batches that fit (and one too large even alone is failed with
its reason), images whose host keeps failing are given up after the tries allowed
instead of coming round forever, and two calls are under way at once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from PIL import Image

from hitl.v1 import feature_pb2, feature_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from tests.support import (
    DATA,
    PHOTOS,
    TILES,
    free_port,
    lite_feature_env,
    require_data,
    require_lite_models,
    running,
)
from tests.trainer.httpserver import FileServer
from trainer_service.datasets import Catalog, Item
from trainer_service.domain import Split
from trainer_service.features.embed_plan import Retries, plan_batch
from trainer_service.features.extraction import Extraction
from trainer_service.features.store import CANDIDATE, FeatureStore
from trainer_service.store.database import Database

LIMIT = 1 << 20  # the feature service's FEATURE_MAX_MESSAGE_BYTES here
TRIES = 3


@pytest.fixture(scope="module")
def feature(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_data(PHOTOS)
    require_data(TILES)
    require_lite_models()
    tmp = tmp_path_factory.mktemp("feature")
    port = free_port()
    env = lite_feature_env(port, tmp / "cache", LOG_LEVEL="WARNING",
                           FEATURE_MAX_MESSAGE_BYTES=str(LIMIT),
                           # The failing image host of the retry test listens on loopback.
                           FEATURE_URL_ALLOWLIST="127.0.0.1")
    with running("feature_service", env, tmp / "feature.log", port):
        yield f"127.0.0.1:{port}"


def large_photos(folder: Path) -> dict[str, Path]:
    """The shared photos, each also upscaled to twice its width and height: 0.1 to 0.8 MiB
    each, several MiB together; kite.jpg (1.35 MiB) and its enlargement (1.4 MiB) are
    more than a message may carry even alone."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for photo in sorted(PHOTOS.glob("*.jpg")):
        out[photo.stem] = photo
        with Image.open(photo) as image:
            w, h = image.size
            bigger = image.convert("RGB").resize((w * 2, h * 2), Image.Resampling.LANCZOS)
        path = folder / f"{photo.stem}-large.jpg"
        bigger.save(path, "JPEG", quality=97)
        out[f"{photo.stem}-large"] = path
    return out


def write_manifest(path: Path, rows: dict[str, str]) -> Path:
    with path.open("w") as f:
        f.write("id,location\n")
        for item_id, location in rows.items():
            f.write(f"{item_id},{location}\n")
    return path


def trainer_env(port: int, tmp: Path, manifest: Path, feature: str) -> dict[str, str]:
    return {"TRAINER_PORT": str(port), "TRAINER_METRICS_PORT": "0",
            "TRAINER_FEATURE_ADDR": feature, "TRAINER_DATASET": str(manifest),
            "TRAINER_DATASET_ROOTS": str(DATA),
            "TRAINER_DATA_DIR": str(tmp / "data"), "TRAINER_EMBED_BATCH": "32",
            "TRAINER_EMBED_MAX_ATTEMPTS": str(TRIES), "TRAINER_EMBED_RETRY_S": "0.2",
            "LOG_LEVEL": "INFO"}


def settled(port: int, timeout: float = 240.0) -> trainer_pb2.Status:
    """The status once every item is either embedded or failed."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        while True:
            status = stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10).status
            if (status.loading.state == trainer_pb2.LOADING_STATE_READY
                    and status.extraction.pending == 0 and status.counts.items > 0
                    and status.counts.embedded + status.extraction.failed
                    == status.counts.items):
                return status
            assert time.monotonic() < deadline, f"extraction stalled: {status.extraction}"
            time.sleep(0.3)


def stored(data_dir: Path) -> tuple[set[str], dict[str, str]]:
    """(items with features, failed item -> reason), read from the trainer's database."""
    with sqlite3.connect(f"file:{data_dir / 'labels.sqlite3'}?mode=ro", uri=True) as db:
        embedded = {r[0] for r in db.execute("SELECT item_id FROM features")}
        failed = dict(db.execute("SELECT item_id, reason FROM failed").fetchall())
    return embedded, failed


def test_large_photos_are_sent_in_batches_that_fit_the_message_limit(feature: str, tmp_path):
    photos = large_photos(tmp_path / "photos")
    sizes = {name: path.stat().st_size for name, path in photos.items()}
    too_large = {name for name, size in sizes.items() if size > LIMIT - 100}
    fitting = set(photos) - too_large
    assert {"kite", "kite-large"} <= too_large and len(fitting) >= 10
    assert sum(sizes[n] for n in fitting) > 3 * LIMIT

    # What a batch by count alone (the 14 photos in one call) gets: refused whole, on
    # every try. This is what stalled extraction.
    with grpc.insecure_channel(feature) as channel:
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        assert stub.Describe(feature_pb2.DescribeRequest(), timeout=10).max_message_bytes == LIMIT
        with pytest.raises(grpc.RpcError) as refused:
            stub.Embed(feature_pb2.EmbedRequest(images=[
                feature_pb2.ImageRef(id=n, data=photos[n].read_bytes()) for n in sorted(fitting)]),
                timeout=60)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    manifest = write_manifest(tmp_path / "photos.csv", {n: str(p) for n, p in photos.items()})
    port = free_port()
    log = tmp_path / "trainer.log"
    with running("trainer_service", trainer_env(port, tmp_path, manifest, feature), log, port):
        status = settled(port)
    embedded, failed = stored(tmp_path / "data")
    assert embedded == fitting
    assert set(failed) == too_large
    for name in too_large:
        assert failed[name].startswith("TOO_LARGE: the image is "), failed[name]
        assert "TRAINER_MAX_MESSAGE_BYTES" in failed[name]
    assert status.extraction.failed == len(too_large)
    assert status.counts.embedded == len(fitting)
    text = log.read_text()
    assert all(f'"item_id": "{name}"' in text for name in too_large)


def test_items_whose_host_keeps_failing_are_given_up_after_the_tries_allowed(
        feature: str, tmp_path):
    host = FileServer(tmp_path)
    host.error = 503  # an image host that is down
    tiles = sorted(TILES.rglob("*.jpg"))[:4]
    with host.serve() as base:
        rows = {f"tile-{i}": str(p) for i, p in enumerate(tiles)}
        rows.update({"down-1": f"{base}/one.jpg", "down-2": f"{base}/two.jpg"})
        manifest = write_manifest(tmp_path / "mixed.csv", rows)
        port = free_port()
        log = tmp_path / "trainer.log"
        with running("trainer_service", trainer_env(port, tmp_path, manifest, feature), log,
                     port):
            status = settled(port, timeout=120)
            time.sleep(1.0)  # nothing more is asked of the host once they failed
    embedded, failed = stored(tmp_path / "data")
    assert embedded == {f"tile-{i}" for i in range(len(tiles))}
    assert set(failed) == {"down-1", "down-2"}
    for reason in failed.values():
        assert reason.startswith("ERROR_KIND_UPSTREAM: ") and "HTTP 503" in reason, reason
        assert f"gave up after {TRIES} tries" in reason
    # Exactly the tries allowed reached the host: no more, and none remembered early.
    assert Counter(path for path, _ in host.requests) == {"/one.jpg": TRIES,
                                                          "/two.jpg": TRIES}
    assert status.extraction.failed == 2 and status.extraction.retrying == 0
    assert "item will be tried again" in log.read_text()


def test_a_batch_is_the_longest_prefix_that_fits_and_waits_grow(tmp_path):
    sizes = {"a": 400, "b": 300, "c": 5000, "d": 200, "e": 100}
    items = []
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
        items.append(Item(name, str(tmp_path / name), Split.POOL))
    items.append(Item("gone", str(tmp_path / "missing"), Split.POOL))
    plan = plan_batch(items, budget=1000)
    # c cannot travel even alone and is failed; the batch stops at the first item that
    # does not fit beside the others (e), which the next call starts with.
    assert [i.id for i in plan.batch] == ["a", "b", "d"]
    assert [i for i, _ in plan.failed] == ["c"]
    plan = plan_batch(items[2:], budget=1000)
    assert [i.id for i in plan.batch] == ["d", "e"]
    assert dict(plan.failed).keys() == {"c", "gone"}
    assert dict(plan.failed)["gone"].startswith("unreadable")

    retries = Retries(max_attempts=3, first_wait_s=1.0)
    assert retries.failed("x", "UPSTREAM", now=0.0) is None
    assert retries.waiting("x", now=0.5) and not retries.waiting("x", now=1.0)
    assert retries.failed("x", "UPSTREAM", now=1.0) is None
    assert retries.waiting("x", now=2.9) and not retries.waiting("x", now=3.0)
    assert retries.failed("x", "UPSTREAM", now=3.0) == "UPSTREAM (gave up after 3 tries)"
    assert len(retries) == 0


async def test_two_embed_calls_are_under_way_at_once_and_each_item_is_embedded(
        feature: str, tmp_path: Path) -> None:
    """The feature service works on one batch while the trainer reads the next and
    stores the last: two calls overlap, none holds another's items, every tile arrives."""
    tiles = sorted((TILES / "images").glob("*.jpg"))[:40]
    catalog = Catalog()
    catalog.add([Item(p.stem, str(p), Split.POOL) for p in tiles])
    store = FeatureStore(Database(tmp_path / "labels.sqlite3"))
    await store.restore()
    await store.enqueue([p.stem for p in tiles], CANDIDATE)
    extraction = Extraction(store, catalog, address=feature, batch=4, deadline_s=60,
                            prefetch=0)
    most, deadline = 0, time.monotonic() + 120
    extraction.start()
    try:
        while store.pending:
            most = max(most, len(extraction.in_flight))
            assert time.monotonic() < deadline, "extraction stalled"
            await asyncio.sleep(0.002)
    finally:
        await extraction.close()
        await store.database.close()
    assert most == 2 * 4
    assert sorted(store.bank.ids) == sorted(p.stem for p in tiles) and not store.failed
