"""Export formats (hitl/export.py), shared with the gateway."""

from __future__ import annotations

import csv
import io
import json

from hitl.export import to_csv, to_jsonl, to_open_images
from hitl.v1 import common_pb2, trainer_pb2


def annotations() -> list[trainer_pb2.Annotation]:
    out = []
    for k, (item, label, undone) in enumerate([
            ("img1", common_pb2.LABEL_POSITIVE, False), ("img2", common_pb2.LABEL_NEGATIVE, False),
            ("img1", common_pb2.LABEL_NEGATIVE, True), ("img3", common_pb2.LABEL_POSITIVE, True)]):
        a = trainer_pb2.Annotation(annotation_id=f"a{k}", item_id=item, label=label,
                                   annotator="ann,\"quoted\"", undone=undone,
                                   strategy=trainer_pb2.STRATEGY_UNCERTAIN, model_version="v1",
                                   split=trainer_pb2.SPLIT_POOL, duration_ms=900)
        a.create_time.FromSeconds(1_700_000_000 + k)
        out.append(a)
    return out


def test_csv_and_jsonl_carry_every_field() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(annotations()))))
    assert len(rows) == 4
    assert rows[0]["annotator"] == "ann,\"quoted\"" and rows[0]["label"] == "positive"
    assert rows[0]["strategy"] == "uncertain" and rows[0]["split"] == "pool"
    assert rows[0]["create_time"] == "2023-11-14T22:13:20Z"
    lines = [json.loads(line) for line in to_jsonl(annotations()).splitlines()]
    assert [line["annotation_id"] for line in lines] == ["a0", "a1", "a2", "a3"]
    assert lines[2]["undone"] is True and lines[1]["duration_ms"] == 900


def test_open_images_format_keeps_the_labels_in_force() -> None:
    text = to_open_images(annotations(), "/m/0199g")
    assert text.splitlines() == ["ImageID,Source,LabelName,Confidence",
                                 "img1,verification,/m/0199g,1",
                                 "img2,verification,/m/0199g,0"]
