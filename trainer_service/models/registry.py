"""Trained models on disk, versioned: which exist, which may serve the current features,
their metrics (the learning curve), which one is pinned in use, and how many are kept."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from trainer_service.domain import Metrics
from trainer_service.features.records import ExtractorRecord
from trainer_service.models.classifier import LinearModel

log = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    version: str
    extractor: ExtractorRecord
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
    # Training labels by class (0 and 0 in files from before they were recorded).
    positives: int = 0
    negatives: int = 0
    # The weights were deleted to keep the count of models down; the metadata stays, so
    # the learning curve keeps its point.
    pruned: bool = False


PIN_FILE = "active.json"


class ModelRegistry:
    """Versioned models on disk: `<version>.npz` (weights) and `<version>.json` (metadata),
    written to temporary names and renamed so a crash never leaves half a model.

    `active.json` names a model pinned in use by an activation (a rollback): while it is
    the model in use, newer models are kept but not adopted. `keep` (0: all) bounds the
    models whose weights are kept; the oldest are pruned, never the pinned one."""

    def __init__(self, folder: Path, keep: int = 0) -> None:
        self.folder = folder
        self.keep = keep
        folder.mkdir(parents=True, exist_ok=True)
        self._pin = self._read_pin()

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
        self.prune()

    # -- the pin ---------------------------------------------------------------------------

    def _read_pin(self) -> str | None:
        try:
            return str(json.loads((self.folder / PIN_FILE).read_text())["version"]) or None
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("model pin unreadable: the newest model is used", extra={
                "path": str(self.folder / PIN_FILE), "error": str(exc)})
            return None

    @property
    def pin(self) -> str | None:
        return self._pin

    def set_pin(self, version: str | None) -> None:
        """Pins `version` in use (None: follow the newest model), durably."""
        path = self.folder / PIN_FILE
        if version is None:
            path.unlink(missing_ok=True)
        else:
            tmp = path.with_suffix(".json.tmp")
            with open(tmp, "w") as f:
                json.dump({"version": version, "pinned_at": time.time()}, f)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        self._pin = version

    def holds(self, info: ModelInfo | None) -> bool:
        """Whether the pin holds `info` (the model in use) against newer models."""
        return info is not None and self._pin == info.version

    def active_compatible(self, extractor: ExtractorRecord) -> tuple[LinearModel, ModelInfo] | None:
        """The pinned model when it fits `extractor`, else the newest that does."""
        if self._pin is not None:
            info = self.info(self._pin)
            if info is not None and info.extractor == extractor and not info.pruned:
                model = self.load(info.version)
                if model is not None:
                    return model, info
        return self.newest_compatible(extractor)

    # -- single models ---------------------------------------------------------------------

    def info(self, version: str) -> ModelInfo | None:
        path = self.folder / f"{version}.json"
        if not version.startswith("v") or not version[1:].isdigit() or not path.is_file():
            return None
        try:
            return load_info(path)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def prune(self) -> list[str]:
        """Deletes the weights of the oldest models past `keep` (never the pinned one) and
        marks their metadata pruned; returns their versions."""
        kept = [i for i in self.history() if not i.pruned]
        excess = len(kept) - self.keep if self.keep > 0 else 0
        pruned = []
        for info in kept:
            if excess <= 0:
                break
            if info.version == self._pin:
                continue
            (self.folder / f"{info.version}.npz").unlink(missing_ok=True)
            meta = self.folder / f"{info.version}.json"
            tmp = meta.with_suffix(".json.tmp")
            tmp.write_text(json.dumps({**asdict(info), "pruned": True}, indent=1))
            tmp.replace(meta)
            pruned.append(info.version)
            excess -= 1
        if pruned:
            log.info("old models pruned", extra={"versions": pruned, "keep": self.keep})
        return pruned

    def newest_compatible(self, extractor: ExtractorRecord) -> tuple[LinearModel, ModelInfo] | None:
        """The newest model trained on features of `extractor`; others are refused with a
        log line saying why."""
        for info in reversed(self.history()):
            if not info.adopted or info.pruned:
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

    def newest_fingerprint(self, extractor: ExtractorRecord) -> str:
        """The training set of the newest model of `extractor` (what the labels last
        trained), whichever model is in use."""
        for info in reversed(self.history()):
            if info.extractor == extractor and info.fingerprint:
                return info.fingerprint
        return ""

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
