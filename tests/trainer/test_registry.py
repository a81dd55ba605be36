"""The versioned model registry: newest compatible model, refusals, damaged files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.test_model import blobs
from trainer_service.domain import Metrics
from trainer_service.models.classifier import LinearModel, train
from trainer_service.models.registry import ModelInfo, ModelRegistry

LITE = {"name": "lite", "version": "1", "dimension": 12, "embedding_dimension": 2}


def test_registry_loads_newest_compatible_and_refuses_others(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = ModelRegistry(tmp_path)
    x, y = blobs(10, 10)
    model = train(x, y, evidence_dim=0)
    for extractor in (LITE, {**LITE, "version": "2"}):
        registry.save(model, ModelInfo(registry.next_version(), extractor, 20, 7, Metrics(f1=0.5),
                                       Metrics()))
    registry.save(model, ModelInfo(registry.next_version(), LITE, 20, 8, Metrics(), Metrics(),
                                   adopted=False))
    with caplog.at_level(logging.WARNING):
        loaded, info = registry.newest_compatible(LITE)
    assert info.version == "v0001" and info.validation.f1 == 0.5
    assert isinstance(loaded, LinearModel)
    assert np.allclose(loaded.probability(x), model.probability(x))
    assert any("model refused" in r.message for r in caplog.records)
    assert registry.newest_compatible({**LITE, "name": "other"}) is None
    assert [i.version for i in registry.history()] == ["v0001", "v0002", "v0003"]


def test_unreadable_model_files_are_skipped(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    registry = ModelRegistry(tmp_path)
    x, y = blobs(10, 10)
    model = train(x, y, evidence_dim=0)
    for _ in range(2):
        registry.save(model, ModelInfo(registry.next_version(), LITE, 20, 1, Metrics(),
                                       Metrics()))
    (tmp_path / "v0002.npz").write_bytes(b"PK\x03\x04 cut off")
    (tmp_path / "v0003.json").write_text('{"version": "v0003", "adop')
    with caplog.at_level(logging.WARNING):
        _, info = registry.newest_compatible(LITE)
    assert info.version == "v0001"
    assert [i.version for i in registry.history()] == ["v0001", "v0002"]
    messages = " ".join(f"{r.message} {getattr(r, 'model_version', '')}" for r in caplog.records)
    assert "v0002" in messages and "v0003" in messages
