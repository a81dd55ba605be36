"""A model as one self-describing file that needs none of this project's code to use:
NumPy .npz (arrays plus a JSON `metadata` entry) or a single JSON object.

    p = 1 / (1 + exp(-(((x - mean) / scale) @ weight + bias)))

with x the feature service's vector (float32, widened to float64), and the decision
"positive" when p >= threshold. The metadata names the extractor whose vectors the model
reads, the task, the training label counts and the metrics.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from hitl.evidence import EVIDENCE_DIM, EVIDENCE_FIELDS
from trainer_service.models.classifier import LinearModel
from trainer_service.models.registry import ModelInfo
from trainer_service.outputs.records import ModelFormat

FORMAT = "hitl-linear-model/1"
FORMULA = "p = 1 / (1 + exp(-(((x - mean) / scale) @ weight + bias)))"


def metadata(info: ModelInfo, model: LinearModel, task: dict[str, Any]) -> dict[str, Any]:
    extractor = dict(info.extractor)
    return {
        "format": FORMAT,
        "version": info.version,
        "create_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.create_time)),
        "task": task,
        "model": {
            "kind": "L2-regularised logistic regression on standardised features",
            "formula": FORMULA,
            "arithmetic": "float64; x is the feature vector's float32 values widened",
            "decision": "positive when p >= threshold",
            "threshold": model.threshold,
            "dimension": len(model.weight),
            "note": "scale already includes the extra weight given to the detector "
                    "evidence, so the formula is complete as written",
        },
        "extractor": {
            **extractor,
            "vector": "dimension little-endian float32 values: the image embedding "
                      f"(embedding_dimension values), then {EVIDENCE_DIM} values of "
                      "detector evidence for detector_class (all zero where it is empty): "
                      "the feature service's Features.vector where that is its target "
                      "class, else the embedding followed by row evidence_row of "
                      "Features.class_evidence",
            "evidence_layout": list(EVIDENCE_FIELDS),
        },
        "labels": {"total": info.labels, "positives": info.positives,
                   "negatives": info.negatives},
        # null for a split with no item: nothing was measured there.
        "metrics": {split: asdict(m) if m.positives + m.negatives else None
                    for split, m in (("validation", info.validation),
                                     ("evaluation", info.evaluation))},
        "training": {"fingerprint": info.fingerprint, "label_version": info.label_version,
                     "train_seconds": info.train_seconds},
    }


def npz_bytes(model: LinearModel, meta: dict[str, Any]) -> bytes:
    """Plain arrays only (no pickled objects): `np.load` reads it with its safe default."""
    out = io.BytesIO()
    np.savez(out, weight=np.asarray(model.weight, dtype=np.float64),
             bias=np.float64(model.bias), mean=np.asarray(model.mean, dtype=np.float64),
             scale=np.asarray(model.scale, dtype=np.float64),
             threshold=np.float64(model.threshold), metadata=np.str_(json.dumps(meta)))
    return out.getvalue()


def json_bytes(model: LinearModel, meta: dict[str, Any]) -> bytes:
    """Python writes each float64 with the shortest digits that read back to the same
    value, so the JSON numbers are exact."""
    document = {**meta, "weight": model.weight.tolist(), "bias": float(model.bias),
                "mean": model.mean.tolist(), "scale": model.scale.tolist()}
    return json.dumps(document).encode()


def model_file(model: LinearModel, info: ModelInfo, task: dict[str, Any],
               fmt: ModelFormat) -> tuple[bytes, str, str]:
    """(data, filename, content type)."""
    meta = metadata(info, model, task)
    slug = "".join(c if c.isalnum() else "-" for c in task.get("display_name", "model").lower())
    if fmt == ModelFormat.JSON:
        return json_bytes(model, meta), f"{slug}-{info.version}.json", "application/json"
    return npz_bytes(model, meta), f"{slug}-{info.version}.npz", "application/octet-stream"
