"""Predictions and classification, through real trainer and gateway processes.

Export: `GET /api/predictions` of 100,000 items, against the same rows streamed straight
from the trainer over gRPC (the baseline, in the same run). The trainer's state is
written beforehand: 100,000 items with synthetic vectors (lite's 1,290 values in the full
form, 266 in the short one) and a model, and its feature service address leads nowhere,
so nothing is embedded: what is timed is scoring, streaming and formatting, which do not
depend on where the vectors came from.

Classify: one new image at a time, end to end (`POST /api/classify` multipart through
the gateway, the trainer, and the lite feature service), against the feature service's
own `Embed` of one new image, interleaved in the same run, on unseen street tiles (so
that no call is a cache hit). The model is synthetic (same dimension and extractor):
its weights do not change the time.

    python -m bench.predictions [--short]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench import stack
from bench.dataset import read_labelled
from bench.gateway import CSRF, TILES, percentile
from hitl.channels import open_channel
from tools.probes import free_port

ROWS = 100_000
# lite's dimension in the full form; the short form's smaller vectors write the trainer's
# state five times faster and change only the one-off scoring, reported apart.
DIMENSION = {False: 1290, True: 266}
LABELLED = 2000
WORK = stack.ROOT / ".run" / "bench-predictions"


# -- trainer state written ahead ---------------------------------------------------------


async def _write_state(data_dir: Path, manifest: Path, ids: list[str], extractor: dict,
                       vectors: np.ndarray, location: str, labelled: bool = True) -> None:
    """A manifest, features, labels (when `labelled`) and a model the trainer takes up."""
    from trainer_service.domain import Annotation, Label, Metrics, Split, Strategy
    from trainer_service.features.store import FeatureStore
    from trainer_service.features.task_evidence import task_matrix
    from trainer_service.models.classifier import train
    from trainer_service.models.registry import ModelInfo, ModelRegistry
    from trainer_service.models.training import training_fingerprint
    from trainer_service.store.database import Database
    from trainer_service.store.labels import LabelLog

    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("id,location\n" + "".join(f"{i},{location}\n" for i in ids))
    database = Database(data_dir / "labels.sqlite3")
    store, labels = FeatureStore(database), LabelLog(database)
    await store.use_extractor(extractor)
    rng = np.random.default_rng(0)
    n = min(LABELLED, len(ids))
    x = vectors[:n] if labelled else rng.standard_normal((200, vectors.shape[1]),
                                                         dtype=np.float32)
    y = (x[:, 0] > 0).astype(int)
    n = len(x)
    for start in range(0, len(ids), 10_000):
        await store.save([(i, v.tobytes()) for i, v in
                          zip(ids[start:start + 10_000], vectors[start:start + 10_000],
                              strict=True)], [])
    if labelled:
        # Labels a person gave: the export says which rows are labelled. They match the
        # model's training set, so the trainer does not train again at start.
        now = time.time()
        await asyncio.gather(*(  # together: one commit for many (the log's group commit)
            labels.add(Annotation(f"bench-{k}", ids[k], Label.POSITIVE if y[k] else
                                  Label.NEGATIVE, "bench", Strategy.UNSPECIFIED, "", 0,
                                  Split.POOL, now)) for k in range(n)))
    await database.close()
    model = train(task_matrix(extractor, x), y, evidence_dim=10)
    fingerprint = training_fingerprint(ids[:n], y) if labelled else ""
    registry = ModelRegistry(data_dir / "models")
    registry.save(model, ModelInfo(registry.next_version(), dict(extractor), n, 0, Metrics(),
                                   Metrics(), fingerprint=fingerprint,
                                   positives=int(y.sum()), negatives=int(n - y.sum())))


# -- export ------------------------------------------------------------------------------


def _loaded_with_model(items: int) -> Callable[[Any], bool]:
    """The dataset is loaded with at least `items` items, and a model is in use."""
    from hitl.v1 import trainer_pb2

    return lambda s: bool(s.loading.state == trainer_pb2.LOADING_STATE_READY
                          and s.counts.items >= items and s.HasField("model"))


async def _direct(address: str) -> tuple[int, float]:
    from hitl.v1 import trainer_pb2, trainer_pb2_grpc

    channel = open_channel(address, "hitl.v1.TrainerService", default_deadline_s=600)
    try:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        started, rows = time.perf_counter(), 0
        async for batch in stub.ExportPredictions(trainer_pb2.ExportPredictionsRequest()):
            rows += len(batch.item_ids)
        return rows, time.perf_counter() - started
    finally:
        await channel.close()


async def _through_gateway(base: str, fmt: str) -> tuple[int, float, int]:
    timeout = aiohttp.ClientTimeout(total=600)
    # unsafe: keep the session cookie of a numeric host (the gateway on 127.0.0.1).
    async with aiohttp.ClientSession(timeout=timeout,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        # The export needs the admin role: every signed-in name has it without tokens.
        async with http.post(f"{base}/api/session", json={"annotator": "bench"},
                             headers={**CSRF, "Origin": base}) as r:
            if r.status != 200:
                raise RuntimeError(f"POST /api/session: {r.status} {await r.text()}")
        started, lines, size = time.perf_counter(), 0, 0
        async with http.get(f"{base}/api/predictions", params={"format": fmt}) as r:
            if r.status != 200:
                raise RuntimeError(f"GET /api/predictions: {r.status} {await r.text()}")
            async for chunk in r.content.iter_chunked(1 << 16):
                lines += chunk.count(b"\n")
                size += len(chunk)
        seconds = time.perf_counter() - started
    return lines - (1 if fmt == "csv" else 0), seconds, size


def export_part(short: bool, rows: int = ROWS) -> dict:
    work = WORK / "export"
    shutil.rmtree(work, ignore_errors=True)
    ids = [f"{k:016x}" for k in range(rows)]
    dimension = DIMENSION[short]
    synthetic = {"name": "bench-synthetic", "version": "1", "dimension": dimension,
                 "embedding_dimension": dimension - 10}
    vectors = np.random.default_rng(1).standard_normal((rows, dimension), dtype=np.float32)
    location = str(next(iter(read_labelled(TILES))).location)
    started = time.perf_counter()
    asyncio.run(_write_state(work / "trainer", work / "manifest.csv", ids, synthetic, vectors,
                             location))
    setup_s = time.perf_counter() - started
    del vectors
    dead = f"127.0.0.1:{free_port()}"  # no feature service: nothing gets embedded
    trainer = stack.trainer_service(work, work / "trainer", dead, work / "manifest.csv",
                                    {"TRAINER_PREFETCH": "0"})
    services = [trainer]
    repeats = 2 if short else 5
    try:
        trainer.start().wait_healthy()
        asyncio.run(stack.wait_for_trainer(trainer.address, _loaded_with_model(rows),
                                           "load with a model", 600, 0.3))
        gateway = stack.gateway(work, trainer.address, dead)
        services.append(gateway)
        gateway.start().wait_healthy()
        base = f"http://127.0.0.1:{gateway.port}"
        first = asyncio.run(_through_gateway(base, "csv"))  # scores the 100,000 items once
        runs: dict[str, list[tuple[int, float, int]]] = {"direct": [], "csv": [], "jsonl": []}
        for _ in range(repeats):  # interleaved, so that a busy moment hits all three
            rows, seconds = asyncio.run(_direct(trainer.address))
            runs["direct"].append((rows, seconds, 0))
            runs["csv"].append(asyncio.run(_through_gateway(base, "csv")))
            runs["jsonl"].append(asyncio.run(_through_gateway(base, "jsonl")))
    finally:
        for service in reversed(services):
            service.stop()
    shutil.rmtree(work, ignore_errors=True)
    figures = {}
    for name, samples in runs.items():
        if any(n != rows for n, _, _ in samples):
            raise RuntimeError(f"{name}: expected {rows} rows, got {[s[0] for s in samples]}")
        seconds = statistics.median(s for _, s, _ in samples)
        figures[name] = {"seconds_median": round(seconds, 3),
                         "rows_per_s": round(rows / seconds),
                         "mib": round(samples[0][2] / 2**20, 1) if samples[0][2] else None}
    gateway_rate = figures["csv"]["rows_per_s"]
    return {
        "rows": rows, "dimension": dimension, "repeats": repeats,
        "setup_s": round(setup_s, 1),
        "first_export_with_scoring_s": round(first[1], 3),
        "direct_grpc": figures["direct"], "gateway_csv": figures["csv"],
        "gateway_jsonl": figures["jsonl"],
        "gateway_csv_vs_direct_grpc": round(gateway_rate / figures["direct"]["rows_per_s"], 2),
        "target_rows_per_s": 50_000, "target_met": gateway_rate >= 50_000,
        "peak_rss_mib": {s.name: round(s.peak_mib, 1) if s.peak_mib else None
                         for s in services},
    }


# -- classify ----------------------------------------------------------------------------


async def _latencies(feature_addr: str, base: str, images: list[bytes]) -> dict[str, list]:
    """Alternates a direct Embed with an end-to-end classification, each of a new image."""
    from hitl.v1 import feature_pb2, feature_pb2_grpc

    channel = open_channel(feature_addr, "hitl.v1.FeatureService", default_deadline_s=60)
    stub = feature_pb2_grpc.FeatureServiceStub(channel)
    out: dict[str, list] = {"embed": [], "classify": []}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            for k in range(0, len(images) - 1, 2):
                t0 = time.perf_counter()
                reply = await stub.Embed(feature_pb2.EmbedRequest(
                    images=[feature_pb2.ImageRef(data=images[k])]))
                out["embed"].append((time.perf_counter() - t0) * 1e3)
                assert reply.results[0].WhichOneof("outcome") == "features"
                form = aiohttp.FormData()
                form.add_field("image", images[k + 1], filename="new.jpg",
                               content_type="image/jpeg")
                t0 = time.perf_counter()
                async with http.post(f"{base}/api/classify", data=form, headers=CSRF) as r:
                    body = await r.json()
                out["classify"].append((time.perf_counter() - t0) * 1e3)
                if r.status != 200 or "probability" not in body["results"][0]:
                    raise RuntimeError(f"classify failed: {r.status} {json.dumps(body)[:300]}")
    finally:
        await channel.close()
    return out


async def _describe(address: str) -> dict:
    from hitl.v1 import feature_pb2, feature_pb2_grpc
    from trainer_service.config import Config
    from trainer_service.features.task_evidence import extractor_key
    from trainer_service.tasks.evidence import feature_task

    channel = open_channel(address, "hitl.v1.FeatureService")
    try:
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        # The default task's features, its detector class resolved as the trainer does.
        return extractor_key((await stub.Describe(feature_pb2.DescribeRequest())).extractor,
                             feature_task(Config()))
    finally:
        await channel.close()


def classify_part(short: bool, samples: int | None = None) -> dict:
    work = WORK / "classify"
    shutil.rmtree(work, ignore_errors=True)
    samples = samples or (40 if short else 150)
    warm = 6
    tiles = [Path(e.location) for e in read_labelled(TILES)]
    images = [p.read_bytes() for p in tiles[-(2 * samples + 2 * warm):]]
    feature = stack.feature_service(work, work / "cache")  # empty cache: every image is new
    services = [feature]
    try:
        feature.start().wait_healthy()
        extractor = asyncio.run(_describe(feature.address))
        vectors = np.random.default_rng(2).standard_normal(
            (10, extractor["stored_dimension"]), dtype=np.float32)
        asyncio.run(_write_state(work / "trainer", work / "manifest.csv",
                                 [f"t{k}" for k in range(10)], extractor, vectors,
                                 str(tiles[0]), labelled=False))
        trainer = stack.trainer_service(work, work / "trainer", feature.address,
                                        work / "manifest.csv", {"TRAINER_PREFETCH": "0"})
        services.append(trainer)
        trainer.start().wait_healthy()
        asyncio.run(stack.wait_for_trainer(trainer.address, _loaded_with_model(10),
                                           "load with a model", 600, 0.3))
        gateway = stack.gateway(work, trainer.address, feature.address)
        gateway.env["GATEWAY_CLASSIFY_RATE"] = "100000/minute"  # one client, every image
        services.append(gateway)
        gateway.start().wait_healthy()
        base = f"http://127.0.0.1:{gateway.port}"
        asyncio.run(_latencies(feature.address, base, images[:2 * warm]))
        measured = asyncio.run(_latencies(feature.address, base, images[2 * warm:]))
    finally:
        for service in reversed(services):
            service.stop()
    shutil.rmtree(work, ignore_errors=True)
    figures = {name: {"count": len(v), "p50_ms": round(percentile(v, 50), 2),
                      "p99_ms": round(percentile(v, 99), 2)} for name, v in measured.items()}
    e, c = figures["embed"], figures["classify"]
    return {
        "extractor": extractor["name"], "image": "unseen 120 px street tiles, one per call",
        "feature_embed": e, "classify_end_to_end": c,
        "overhead_p50": round(c["p50_ms"] / e["p50_ms"] - 1, 3),
        "overhead_p99": round(c["p99_ms"] / e["p99_ms"] - 1, 3),
        "target_overhead": 0.2, "target_met": c["p50_ms"] / e["p50_ms"] - 1 < 0.2,
    }


def run(short: bool = True) -> dict:
    missing = stack.missing_modules("feature_service", "trainer_service", "annotation_gateway")
    if missing:
        return {"status": "missing", "reason": f"{', '.join(missing)} not built"}
    if not TILES.exists():
        return {"status": "skipped", "reason": f"dataset {TILES} not found"}
    return {"export": export_part(short), "classify": classify_part(short)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--only", choices=("export", "classify"))
    args = parser.parse_args()
    parts = {"export": export_part, "classify": classify_part}
    chosen = [args.only] if args.only else list(parts)
    print(json.dumps({name: parts[name](args.short) for name in chosen}, indent=2))


if __name__ == "__main__":
    main()
