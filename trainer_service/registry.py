"""Trained models on disk, versioned: which exist, which may serve the current features,
and their metrics (the learning curve)."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from trainer_service.domain import Metrics
from trainer_service.model import LinearModel

log = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    version: str
    extractor: dict  # name, version, dimension
    labels: int
    label_version: int
    validation: Metrics
    evaluation: Metrics
    create_time: float = field(default_factory=time.time)
    train_seconds: float = 0.0
    # Models of earlier versions could be trained and not used; every model is used now.
    adopted: bool = True
    # Names the training set (items and labels): the same set makes the same model.
    fingerprint: str = ""
    # Every annotation in force when it was trained (training, audit and gold answers).
    labels_given: int = 0


class ModelRegistry:
    """Versioned models on disk: `<version>.npz` (weights) and `<version>.json` (metadata),
    written to temporary names and renamed so a crash never leaves half a model."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def next_version(self) -> str:
        existing = [int(p.stem[1:]) for p in self.folder.glob("v*.json") if p.stem[1:].isdigit()]
        return f"v{max(existing, default=0) + 1:04d}"

    def save(self, model: LinearModel, info: ModelInfo) -> None:
        weights = self.folder / f"{info.version}.npz"
        with open(weights.with_suffix(".npz.tmp"), "wb") as f:
            np.savez(f, weight=model.weight, bias=model.bias, mean=model.mean,
                     scale=model.scale, threshold=np.array(model.threshold))
            f.flush()
            os.fsync(f.fileno())
        weights.with_suffix(".npz.tmp").replace(weights)
        meta = self.folder / f"{info.version}.json"
        tmp = meta.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(info), indent=1))
        tmp.replace(meta)

    def newest_compatible(self, extractor: dict) -> tuple[LinearModel, ModelInfo] | None:
        """The newest model trained on features of `extractor`; others are refused with a
        log line saying why."""
        for info in reversed(self.history()):
            if not info.adopted:
                continue
            if info.extractor != extractor:
                log.warning("model refused: trained on other features", extra={
                    "model_version": info.version, "model_extractor": info.extractor,
                    "extractor": extractor})
                continue
            model = self.load(info.version)
            if model is not None:
                return model, info
        return None

    def load(self, version: str) -> LinearModel | None:
        """One model's weights; None (with a warning) when they cannot be read."""
        weights = self.folder / f"{version}.npz"
        try:
            with np.load(weights) as z:
                return LinearModel.from_arrays(z["weight"], z["bias"], z["mean"], z["scale"],
                                               float(z["threshold"]))
        except Exception as exc:  # numpy raises many kinds for a damaged file
            log.warning("model refused: its weights cannot be read", extra={
                "model_version": version, "path": str(weights), "error": str(exc)})
            return None

    def history(self) -> list[ModelInfo]:
        """Every readable model's metadata, oldest first; unreadable files are skipped
        with a warning (a crash mid-write or a damaged disk must not stop the service)."""
        out = []
        for path in sorted(self.folder.glob("v*.json")):
            try:
                out.append(load_info(path))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("model metadata unreadable: skipped", extra={
                    "model_version": path.stem, "path": str(path), "error": str(exc)})
        return out


def load_info(path: Path) -> ModelInfo:
    raw = json.loads(path.read_text())
    raw["validation"] = Metrics(**raw["validation"])
    raw["evaluation"] = Metrics(**raw["evaluation"])
    return ModelInfo(**raw)
