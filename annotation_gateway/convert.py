"""Protocol buffers to and from the JSON the browser sees: enum names are short lower-case
words ("positive", "uncertain"), times are ISO 8601 strings, and local images are given
as gateway URLs built from the item id alone."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from annotation_gateway.json_view import enum_words, to_json
from hitl.v1 import common_pb2, trainer_pb2

LABELS = enum_words(common_pb2.Label.DESCRIPTOR)
LABEL_BY_NAME: dict[str, Any] = {name: value for value, name in LABELS.items()}
STRATEGIES = enum_words(trainer_pb2.Strategy.DESCRIPTOR)
SPLITS = enum_words(trainer_pb2.Split.DESCRIPTOR)


def _time(message: Any, field: str) -> str | None:
    if not message.HasField(field):
        return None
    return str(getattr(message, field).ToJsonString())


def metrics(m: common_pb2.Metrics) -> dict[str, Any]:
    return to_json(m)


def estimate(e: trainer_pb2.Estimate) -> dict[str, Any]:
    return to_json(e)


def status(s: trainer_pb2.Status) -> dict[str, Any]:
    """The status as the page reads it (json_view: the proto's own fields)."""
    return to_json(s)


def scoring(s: trainer_pb2.Scoring) -> dict[str, Any]:
    """The dataset scoring job's progress."""
    return to_json(s)


def image_path(item_id: str, thumbnail: bool) -> str:
    return f"/api/items/{quote(item_id, safe='')}/{'thumbnail' if thumbnail else 'image'}"


def detector(i: trainer_pb2.Item) -> dict[str, Any] | None:
    """Where the detector looked: its score and box [x1, y1, x2, y2] in [0, 1]."""
    if not i.HasField("evidence") or not i.evidence.HasField("box"):
        return None
    b = i.evidence.box
    return {"score": round(i.evidence.score, 4),
            "box": [round(v, 4) for v in (b.x1, b.y1, b.x2, b.y2)]}


def item(i: trainer_pb2.Item) -> dict[str, Any]:
    # Checks are blind: nothing here may tell a check (gold, audit) from any other item,
    # so neither the strategy nor what follows from it (the score, which is 0 for known
    # answers, and the scoring model, empty for them) reaches the page, and the known
    # label of a gold item comes only in the answer to its annotation.
    return {
        "id": i.id,
        "image_url": i.image_url or image_path(i.id, thumbnail=False),
        "thumbnail_url": i.thumbnail_url or i.image_url or image_path(i.id, thumbnail=True),
        "remote": bool(i.image_url),
        "lease_expire_time": _time(i, "lease_expire_time"),
        "detector": detector(i),
    }


def annotation(a: trainer_pb2.Annotation) -> dict[str, Any]:
    return {
        "id": a.annotation_id,
        "item_id": a.item_id,
        "label": LABELS.get(a.label, "unspecified"),
        "annotator": a.annotator,
        "strategy": STRATEGIES.get(a.strategy, "unknown"),
        "model_version": a.model_version,
        "duration_ms": a.duration_ms,
        "create_time": _time(a, "create_time"),
        "undone": a.undone,
        "split": SPLITS.get(a.split, "unknown"),
        "note": a.note,
    }


OWN_FIELDS = ("id", "item_id", "label", "annotator", "duration_ms", "create_time", "undone",
              "note")


def own_annotation(a: trainer_pb2.Annotation) -> dict[str, Any]:
    """An annotation as its annotator sees it: without why the item was served (strategy,
    model) or which split it is in, which would tell checks apart (the export has them)."""
    full = annotation(a)
    return {key: full[key] for key in OWN_FIELDS}


def gold_check(response: trainer_pb2.AddAnnotationResponse) -> dict[str, Any] | None:
    if not response.HasField("gold_check"):
        return None
    g = response.gold_check
    return {"known_label": LABELS.get(g.known_label, "unspecified"), "agrees": g.agrees}


TASK_SOURCES = {trainer_pb2.TASK_SOURCE_SETTINGS: "settings", trainer_pb2.TASK_SOURCE_FILE: "file",
                trainer_pb2.TASK_SOURCE_API: "api"}


def task(t: trainer_pb2.Task) -> dict[str, Any]:
    return {"name": t.name, "display_name": t.display_name, "question": t.question,
            "guidelines": t.guidelines, "positive_class": t.positive_class,
            "detector_class": t.detector_class, "target_f1": t.target_f1, "mix": t.mix,
            "archived": t.archived, "source": TASK_SOURCES.get(t.source, "unknown"),
            "default": t.is_default, "state": t.state,
            "url": f"/t/{t.name}/"}
