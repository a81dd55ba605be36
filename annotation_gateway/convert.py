"""Protocol buffers to and from the JSON the browser sees: enum names are short lower-case
words ("positive", "uncertain"), times are ISO 8601 strings, and local images are given
as gateway URLs built from the item id alone."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hitl.v1 import common_pb2, trainer_pb2

LABELS = {common_pb2.LABEL_POSITIVE: "positive", common_pb2.LABEL_NEGATIVE: "negative"}
LABEL_BY_NAME = {name: value for value, name in LABELS.items()}

STRATEGIES = {
    trainer_pb2.STRATEGY_GOLD: "gold",
    trainer_pb2.STRATEGY_RANDOM: "random",
    trainer_pb2.STRATEGY_UNCERTAIN: "uncertain",
    trainer_pb2.STRATEGY_OUTLIER: "outlier",
    trainer_pb2.STRATEGY_COLD_START: "cold_start",
}
SPLITS = {
    trainer_pb2.SPLIT_POOL: "pool",
    trainer_pb2.SPLIT_VALIDATION: "validation",
    trainer_pb2.SPLIT_EVALUATION: "evaluation",
}
LOADING = {
    trainer_pb2.LOADING_STATE_LOADING: "loading",
    trainer_pb2.LOADING_STATE_READY: "ready",
    trainer_pb2.LOADING_STATE_FAILED: "failed",
}


def _time(message: Any, field: str) -> str | None:
    if not message.HasField(field):
        return None
    return str(getattr(message, field).ToJsonString())


def metrics(m: common_pb2.Metrics) -> dict[str, Any]:
    return {"f1": m.f1, "precision": m.precision, "recall": m.recall, "roc_auc": m.roc_auc,
            "average_precision": m.average_precision, "threshold": m.threshold,
            "positives": m.positives, "negatives": m.negatives}


def _optional_metrics(message: Any, field: str) -> dict[str, Any] | None:
    return metrics(getattr(message, field)) if message.HasField(field) else None


def status(s: trainer_pb2.Status) -> dict[str, Any]:
    c, e = s.counts, s.extraction
    model = None
    if s.HasField("model"):
        model = {"version": s.model.version, "labels": s.model.labels,
                 "validation": _optional_metrics(s.model, "validation"),
                 "evaluation": _optional_metrics(s.model, "evaluation"),
                 "create_time": _time(s.model, "create_time")}
    return {
        "label_id": s.label_id,
        "display_name": s.display_name,
        "target_f1": s.target_f1,
        "loading": {"state": LOADING.get(s.loading.state, "unknown"),
                    "message": s.loading.message, "fraction": s.loading.fraction,
                    "items_loaded": s.loading.items_loaded},
        "counts": {"items": c.items, "pool": c.pool, "validation": c.validation,
                   "evaluation": c.evaluation, "embedded": c.embedded,
                   "labelled_positive": c.labelled_positive,
                   "labelled_negative": c.labelled_negative,
                   "gold_checks": c.gold_checks, "gold_agreements": c.gold_agreements},
        "model": model,
        "learning_curve": [{"labels": p.labels, "model_version": p.model_version,
                            "validation": _optional_metrics(p, "validation"),
                            "evaluation": _optional_metrics(p, "evaluation")}
                           for p in s.learning_curve],
        "extraction": {"pending": e.pending, "seconds_per_item": e.seconds_per_item,
                       "eta_seconds": e.eta_seconds},
        "scoring": scoring(s.scoring) if s.HasField("scoring") else None,
    }


SCORING_STATES = {
    trainer_pb2.SCORING_STATE_RUNNING: "running",
    trainer_pb2.SCORING_STATE_DONE: "done",
    trainer_pb2.SCORING_STATE_FAILED: "failed",
}


def scoring(s: trainer_pb2.Scoring) -> dict[str, Any]:
    """The dataset scoring job's progress."""
    return {"state": SCORING_STATES.get(s.state, "unknown"), "total": s.total,
            "embedded": s.embedded, "failed": s.failed,
            "items_per_second": s.items_per_second, "eta_seconds": s.eta_seconds,
            "message": s.message, "scored": s.scored, "start_time": _time(s, "start_time")}


def image_path(item_id: str, thumbnail: bool) -> str:
    return f"/api/items/{quote(item_id, safe='')}/{'thumbnail' if thumbnail else 'image'}"


def item(i: trainer_pb2.Item) -> dict[str, Any]:
    # The known label of gold items stays on the server: the check is only worth
    # something if the annotator cannot read the answer from the page.
    return {
        "id": i.id,
        "image_url": i.image_url or image_path(i.id, thumbnail=False),
        "thumbnail_url": i.thumbnail_url or i.image_url or image_path(i.id, thumbnail=True),
        "remote": bool(i.image_url),
        "strategy": STRATEGIES.get(i.strategy, "unknown"),
        "score": i.score,
        "model_version": i.model_version,
        "lease_expire_time": _time(i, "lease_expire_time"),
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
    }


def gold_check(response: trainer_pb2.AddAnnotationResponse) -> dict[str, Any] | None:
    if not response.HasField("gold_check"):
        return None
    g = response.gold_check
    return {"known_label": LABELS.get(g.known_label, "unspecified"), "agrees": g.agrees}
