"""Model files anyone can run, the float64 probabilities they define, and the registry's
pin (rollback) and pruning, on real files."""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path

import numpy as np

from tests.trainer.test_model import blobs
from trainer_service.domain import Metrics
from trainer_service.models.classifier import train
from trainer_service.models.registry import ModelInfo, ModelRegistry
from trainer_service.outputs.model_files import model_file
from trainer_service.outputs.predictions import probabilities, sigmoid
from trainer_service.outputs.records import ModelFormat

EXTRACTOR = {"name": "lite", "version": "7", "dimension": 12, "embedding_dimension": 2}
TASK = {"label_id": "/m/0199g", "display_name": "Bicycle"}


def info(version: str, fingerprint: str = "", **extra) -> ModelInfo:  # type: ignore[no-untyped-def]
    return ModelInfo(version, EXTRACTOR, 30, 4,
                     Metrics(f1=0.75, threshold=0.5, positives=4, negatives=6),
                     Metrics(), fingerprint=fingerprint, positives=10, negatives=20,
                     **extra)


def test_probabilities_are_the_float64_formula_and_close_to_the_rankers() -> None:
    x, y = blobs(30, 60, d=40)
    model = train(x, y, evidence_dim=5)
    p = probabilities(model, x)
    z = (x.astype(np.float64) - model.mean) / model.scale
    assert np.max(np.abs(p - 1 / (1 + np.exp(-(z @ model.weight + model.bias))))) < 1e-12
    # The ranker's float32 shortcut is close, but not what a file reader would compute.
    assert np.max(np.abs(p - model.probability(x))) < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow for very large logits
        assert sigmoid(np.array([-1000.0, 0.0, 1000.0])).tolist() == [0.0, 0.5, 1.0]


def test_npz_and_json_files_reproduce_the_probabilities_without_our_code() -> None:
    x, y = blobs(25, 50, d=12)
    model = train(x, y, evidence_dim=10, evidence_weight=10.0)
    expected = probabilities(model, x)
    data, filename, content_type = model_file(model, info("v0003"), TASK, ModelFormat.NPZ)
    assert filename == "bicycle-v0003.npz" and content_type == "application/octet-stream"
    with np.load(io.BytesIO(data)) as m:  # allow_pickle stays False: plain arrays only
        meta = json.loads(str(m["metadata"]))
        xs = x.astype(np.float64)
        p = 1 / (1 + np.exp(-(((xs - m["mean"]) / m["scale"]) @ m["weight"] + m["bias"])))
        assert float(m["threshold"]) == meta["model"]["threshold"] == 0.5
    assert np.max(np.abs(p - expected)) < 1e-12
    assert meta["extractor"]["name"] == "lite" and meta["extractor"]["dimension"] == 12
    assert meta["labels"] == {"total": 30, "positives": 10, "negatives": 20}
    assert meta["metrics"]["validation"]["f1"] == 0.75 and meta["task"] == TASK
    assert meta["metrics"]["evaluation"] is None  # an empty split measured nothing
    assert meta["format"] == "hitl-linear-model/1" and meta["version"] == "v0003"

    data, filename, content_type = model_file(model, info("v0003"), TASK, ModelFormat.JSON)
    assert filename.endswith(".json") and content_type == "application/json"
    doc = json.loads(data)
    w, b = np.array(doc["weight"]), doc["bias"]
    mean, scale = np.array(doc["mean"]), np.array(doc["scale"])
    p = 1 / (1 + np.exp(-(((x.astype(np.float64) - mean) / scale) @ w + b)))
    assert np.max(np.abs(p - expected)) < 1e-12  # JSON numbers round-trip exactly


def save_models(registry: ModelRegistry, n: int) -> None:
    x, y = blobs(10, 10, d=12)
    model = train(x, y, evidence_dim=0)
    for k in range(n):
        registry.save(model, info(registry.next_version(), fingerprint=f"set{k}"))
        time.sleep(0.001)


def test_a_pin_holds_a_rollback_across_restarts_and_survives_pruning(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path, keep=3)
    save_models(registry, 2)
    registry.set_pin("v0001")
    save_models(registry, 3)  # v0003..v0005: v0002 is pruned, the pinned v0001 is kept
    kept = [i.version for i in registry.history() if not i.pruned]
    assert kept == ["v0001", "v0004", "v0005"]
    assert not (tmp_path / "v0002.npz").exists() and registry.info("v0002").pruned
    assert [i.version for i in registry.history()][:3] == ["v0001", "v0002", "v0003"]

    restarted = ModelRegistry(tmp_path, keep=3)
    assert restarted.pin == "v0001"
    _, active = restarted.active_compatible(EXTRACTOR)
    assert active.version == "v0001" and restarted.holds(active)
    # Labels last trained the newest model, whichever is in use.
    assert restarted.newest_fingerprint(EXTRACTOR) == "set2"
    # Another extractor: the pin does not apply; nothing fits.
    assert restarted.active_compatible({**EXTRACTOR, "version": "8"}) is None

    restarted.set_pin(None)
    assert ModelRegistry(tmp_path).pin is None
    _, newest = restarted.active_compatible(EXTRACTOR)
    assert newest.version == "v0005"
    assert restarted.info("v0099") is None and restarted.info("../etc") is None


def test_an_unreadable_pin_file_falls_back_to_the_newest(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    save_models(registry, 2)
    (tmp_path / "active.json").write_text("{not json")
    reopened = ModelRegistry(tmp_path)
    assert reopened.pin is None
    assert reopened.active_compatible(EXTRACTOR)[1].version == "v0002"
