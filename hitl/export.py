"""Labelled-set export formats, shared by the trainer and the gateway.

Input: `hitl.v1.trainer_pb2.Annotation` messages (as the ExportLabels stream sends them).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from hitl.v1 import common_pb2, trainer_pb2

CSV_FIELDS = ("annotation_id", "item_id", "label", "annotator", "strategy", "model_version",
              "duration_ms", "create_time", "undone", "split")
OPEN_IMAGES_FIELDS = ("ImageID", "Source", "LabelName", "Confidence")


def record(a: trainer_pb2.Annotation) -> dict:
    """One annotation as a plain dict with readable enum names."""
    return {
        "annotation_id": a.annotation_id,
        "item_id": a.item_id,
        "label": {common_pb2.LABEL_POSITIVE: "positive",
                  common_pb2.LABEL_NEGATIVE: "negative"}.get(a.label, "unspecified"),
        "annotator": a.annotator,
        "strategy": trainer_pb2.Strategy.Name(a.strategy).removeprefix("STRATEGY_").lower(),
        "model_version": a.model_version,
        "duration_ms": a.duration_ms,
        "create_time": a.create_time.ToJsonString() if a.HasField("create_time") else "",
        "undone": a.undone,
        "split": trainer_pb2.Split.Name(a.split).removeprefix("SPLIT_").lower(),
    }


def to_csv(annotations: Iterable[trainer_pb2.Annotation]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for a in annotations:
        writer.writerow(record(a))
    return out.getvalue()


def to_jsonl(annotations: Iterable[trainer_pb2.Annotation]) -> str:
    return "".join(json.dumps(record(a)) + "\n" for a in annotations)


def to_open_images(annotations: Iterable[trainer_pb2.Annotation], label_id: str,
                   source: str = "verification") -> str:
    """`ImageID,Source,LabelName,Confidence`, one row per item: its latest annotation in
    force (undone ones are skipped), Confidence 1 for present and 0 for absent."""
    latest: dict[str, trainer_pb2.Annotation] = {}
    for a in annotations:
        if not a.undone and a.label in (common_pb2.LABEL_POSITIVE, common_pb2.LABEL_NEGATIVE):
            latest.pop(a.item_id, None)
            latest[a.item_id] = a
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(OPEN_IMAGES_FIELDS)
    for item_id, a in latest.items():
        writer.writerow((item_id, source, label_id,
                         1 if a.label == common_pb2.LABEL_POSITIVE else 0))
    return out.getvalue()
