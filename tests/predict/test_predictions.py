"""GET /api/predictions, the scoring job and the model file, against real services: one
row per embedded item, every item once the job has embedded the rest through
EmbedStream, and a downloaded model that reproduces the service's probabilities to 1e-6
on 1,000 items from the feature service's own vectors."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time

import grpc
import numpy as np

from hitl.v1 import feature_pb2, feature_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from tests.gateway.conftest import Manifest, TrainerProcess
from tests.gateway.helpers import CSRF, client, config, sign_in
from tests.predict.conftest import Feature

JOB_TIMEOUT_S = 600
CHECKED = 1000


def status(trainer: TrainerProcess) -> trainer_pb2.Status:
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        return stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10).status


def annotations(trainer: TrainerProcess) -> dict[str, str]:
    """item id -> the label in force, from the trainer's own export."""
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        out = {}
        for batch in stub.ExportLabels(trainer_pb2.ExportLabelsRequest(), timeout=30):
            for a in batch.annotations:
                out[a.item_id] = {1: "positive", 2: "negative"}[a.label]
        return out


async def read_csv(c, expect: int = 200) -> tuple[list[dict[str, str]], str]:  # type: ignore[no-untyped-def]
    r = await c.get("/api/predictions?format=csv")
    assert r.status == expect, await r.text()
    assert r.headers["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(await r.text()))), r.headers["X-Model-Version"]


async def test_one_row_per_embedded_item_with_how_people_labelled_it(
        predict_trainer: TrainerProcess, predict_feature: Feature, tiles: Manifest):
    async with client(config(trainer_addr=predict_trainer.addr,
                             feature_addr=predict_feature.addr)) as c:
        await sign_in(c)  # model routes and the export need the admin role
        before = status(predict_trainer)
        rows, version = await read_csv(c)
        jsonl = await c.get("/api/predictions?format=jsonl")
        lines = [json.loads(line) for line in (await jsonl.text()).splitlines()]
        assert (await c.get("/api/predictions?format=xml")).status == 400
    counts = before.counts
    # Every known (validation, evaluation) item is embedded, and the pool sample.
    assert len(rows) == counts.embedded + counts.validation + counts.evaluation
    assert len(rows) < counts.items  # the rest waits for the scoring job
    assert len({r["item_id"] for r in rows}) == len(rows)
    assert {r["model_version"] for r in rows} == {version} and version.startswith("v")
    assert {r["item_id"] for r in lines} == {r["item_id"] for r in rows}
    labelled = annotations(predict_trainer)
    by_id = {r["item_id"]: r for r in rows}
    assert labelled and all(by_id[i]["labelled"] == "true" and by_id[i]["label"] == label
                            for i, label in labelled.items())
    assert sum(r["labelled"] == "true" for r in rows) == len(labelled)
    for r in rows:
        assert (r["decision"] == "positive") == (float(r["probability"]) >= 0.5)
        if r["split"] != "pool":
            truth = "positive" if tiles.labels[r["item_id"]] else "negative"
            assert r["known_label"] == truth
    # The model is good on the tiles: most known items are predicted right.
    known = [r for r in rows if r["known_label"]]
    right = sum(r["decision"] == r["known_label"] for r in known)
    assert right / len(known) > 0.85


async def test_the_job_embeds_the_rest_through_embedstream_then_every_item_has_a_row(
        predict_trainer: TrainerProcess, predict_feature: Feature, tiles: Manifest):
    async with client(config(trainer_addr=predict_trainer.addr,
                             feature_addr=predict_feature.addr)) as c:
        await sign_in(c)  # model routes and the export need the admin role
        missing = status(predict_trainer).counts.pool - status(predict_trainer).counts.embedded
        started = await c.post("/api/predictions/job", headers=CSRF)
        assert started.status == 202, await started.text()
        assert (await started.json())["scoring"]["state"] == "running"
        seen_running = []
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            scoring = (await (await c.get("/api/status")).json())["scoring"]
            if scoring["state"] != "running":
                break
            seen_running.append(scoring)
            again = await c.post("/api/predictions/job", headers=CSRF)  # joins, starts nothing
            assert (await again.json())["scoring"]["start_time"] == scoring["start_time"]
            await asyncio.sleep(0.5)
        assert scoring["state"] == "done", scoring
        assert scoring["total"] == missing and scoring["embedded"] == missing
        assert scoring["failed"] == 0 and scoring["scored"] == len(tiles.labels)
        assert any(s["total"] == missing and s["eta_seconds"] >= 0 and s["embedded"] > 0
                   for s in seen_running), seen_running
        rows, _ = await read_csv(c)
    assert sorted(r["item_id"] for r in rows) == sorted(tiles.labels)
    assert "/hitl.v1.FeatureService/EmbedStream" in predict_feature.log()


async def test_a_downloaded_model_reproduces_the_services_probabilities(
        predict_trainer: TrainerProcess, predict_feature: Feature):
    async with client(config(trainer_addr=predict_trainer.addr,
                             feature_addr=predict_feature.addr)) as c:
        await sign_in(c)  # model routes and the export need the admin role
        rows, version = await read_csv(c)
        listing = await (await c.get("/api/models")).json()
        npz = await c.get(f"/api/models/{version}")
        assert npz.status == 200 and npz.content_type == "application/octet-stream"
        assert f"{version}.npz" in npz.headers["Content-Disposition"]
        npz_bytes = await npz.read()
        as_json = await (await c.get(f"/api/models/{version}?format=json")).json()
        assert (await c.get("/api/models/v9999")).status == 404
        assert (await c.get("/api/models/latest")).status == 400
    entry = next(m for m in listing["models"] if m["version"] == version)
    assert entry["active"] and entry["compatible"] and entry["extractor"]["name"] == "lite"
    assert entry["labels"]["total"] == entry["labels"]["positive"] + entry["labels"]["negative"]
    # The manifest ships labels, so the live estimate rests on its embedded validation items.
    estimate = entry["estimate"]
    assert estimate["labels"] > 0 and estimate["source"] == "validation", estimate
    assert 0 <= estimate["f1_low"] <= estimate["f1"] <= estimate["f1_high"] <= 1

    rows = sorted(rows, key=lambda r: r["item_id"])[:CHECKED]
    assert len(rows) == CHECKED
    # The vectors straight from the feature service (its cache, keyed by item id).
    with grpc.insecure_channel(predict_feature.addr) as channel:
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        ids = [r["item_id"] for r in rows]
        found = [f for start in range(0, len(ids), 250) for f in stub.Lookup(
            feature_pb2.LookupRequest(ids=ids[start:start + 250]), timeout=60).results]
    assert all(f.WhichOneof("outcome") == "features" for f in found)
    vectors = [np.frombuffer(f.features.vector, "<f4") for f in found]
    x = np.stack(vectors)
    served = np.array([float(r["probability"]) for r in rows])

    # docs/classifier.md's snippet, word for word.
    m = np.load(io.BytesIO(npz_bytes))
    meta = json.loads(str(m["metadata"]))
    z = (x.astype(np.float64) - m["mean"]) / m["scale"]
    p = 1 / (1 + np.exp(-(z @ m["weight"] + m["bias"])))
    decision = p >= m["threshold"]

    assert np.max(np.abs(p - served)) < 1e-6
    assert decision.tolist() == [r["decision"] == "positive" for r in rows]
    assert meta["version"] == version and meta["extractor"]["dimension"] == x.shape[1]
    assert meta["labels"]["total"] == entry["labels"]["total"]
    w, b = np.array(as_json["weight"]), as_json["bias"]
    p_json = 1 / (1 + np.exp(-(((x.astype(np.float64) - np.array(as_json["mean"]))
                               / np.array(as_json["scale"])) @ w + b)))
    assert np.max(np.abs(p_json - served)) < 1e-6
