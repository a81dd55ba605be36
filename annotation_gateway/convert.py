"""Protocol buffers to and from the JSON the browser sees: enum names are short lower-case
words ("positive", "uncertain"), times are ISO 8601 strings, and local images are given
as gateway URLs built from the item id alone."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hitl.v1 import common_pb2, trainer_pb2

LABELS = {common_pb2.LABEL_POSITIVE: "positive", common_pb2.LABEL_NEGATIVE: "negative",
          common_pb2.LABEL_SKIP: "skip", common_pb2.LABEL_UNSURE: "unsure"}
LABEL_BY_NAME = {name: value for value, name in LABELS.items()}

STRATEGIES = {
    trainer_pb2.STRATEGY_GOLD: "gold",
    trainer_pb2.STRATEGY_RANDOM: "random",
    trainer_pb2.STRATEGY_UNCERTAIN: "uncertain",
    trainer_pb2.STRATEGY_OUTLIER: "outlier",
    trainer_pb2.STRATEGY_COLD_START: "cold_start",
    trainer_pb2.STRATEGY_AUDIT: "audit",
    trainer_pb2.STRATEGY_REVIEW: "review",
    trainer_pb2.STRATEGY_RECHECK: "recheck",
    trainer_pb2.STRATEGY_IMPORTED: "imported",
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
    """A split's metrics; what the split cannot measure is null, never 0 (which would read
    as a failing model): F1, precision, recall and average precision need a positive item,
    ROC AUC both classes."""
    some = m.positives > 0
    both = some and m.negatives > 0
    return {"f1": m.f1 if some else None, "precision": m.precision if some else None,
            "recall": m.recall if some else None, "roc_auc": m.roc_auc if both else None,
            "average_precision": m.average_precision if some else None,
            "threshold": m.threshold, "positives": m.positives, "negatives": m.negatives}


def _optional_metrics(message: Any, field: str) -> dict[str, Any] | None:
    return metrics(getattr(message, field)) if message.HasField(field) else None


ESTIMATE_SOURCES = {
    trainer_pb2.ESTIMATE_SOURCE_AUDIT: "audit",
    trainer_pb2.ESTIMATE_SOURCE_VALIDATION: "validation",
}


def estimate(e: trainer_pb2.Estimate) -> dict[str, Any]:
    return {"f1": e.f1, "f1_low": e.f1_low, "f1_high": e.f1_high,
            "precision": e.precision, "precision_low": e.precision_low,
            "precision_high": e.precision_high, "recall": e.recall,
            "recall_low": e.recall_low, "recall_high": e.recall_high, "labels": e.labels,
            "population": e.population, "source": ESTIMATE_SOURCES.get(e.source, "unknown")}


def _optional_estimate(message: Any) -> dict[str, Any] | None:
    return estimate(message.estimate) if message.HasField("estimate") else None


def forecast(f: trainer_pb2.Forecast) -> dict[str, Any]:
    # -1 means "not bounded by the curve so far": JSON says so with null.
    return {"reached": f.reached, "labels": f.labels if f.labels >= 0 else None,
            "low": f.low, "high": f.high if f.high >= 0 else None, "points": f.points,
            "more_answers": f.more_answers}


def status(s: trainer_pb2.Status) -> dict[str, Any]:
    c, e = s.counts, s.extraction
    kappa = ("self_kappa", "gold_kappa")
    model = None
    if s.HasField("model"):
        model = {"version": s.model.version, "labels": s.model.labels,
                 "labels_given": s.model.labels_given, "pinned": s.model.pinned,
                 "estimate": _optional_estimate(s.model),
                 "validation": _optional_metrics(s.model, "validation"),
                 "evaluation": _optional_metrics(s.model, "evaluation"),
                 "create_time": _time(s.model, "create_time")}
    return {
        "task": s.task,
        "question": s.question,
        "label_id": s.label_id,
        "display_name": s.display_name,
        "target_f1": s.target_f1,
        "min_per_class": s.min_per_class,
        "loading": {"state": LOADING.get(s.loading.state, "unknown"),
                    "message": s.loading.message, "fraction": s.loading.fraction,
                    "items_loaded": s.loading.items_loaded},
        "counts": {"items": c.items, "pool": c.pool, "validation": c.validation,
                   "evaluation": c.evaluation, "embedded": c.embedded,
                   "labelled_positive": c.labelled_positive,
                   "labelled_negative": c.labelled_negative,
                   "gold_checks": c.gold_checks, "gold_agreements": c.gold_agreements,
                   "audit_labels": c.audit_labels, "audit_reserve": c.audit_reserve,
                   "audit_embedded": c.audit_embedded,
                   "validation_embedded": c.validation_embedded,
                   "evaluation_embedded": c.evaluation_embedded,
                   "skipped": c.skipped, "unsure": c.unsure, "reviewed": c.reviewed,
                   "corrected": c.corrected, "contested": c.contested},
        # Kappas are null until defined.
        "annotators": [{"annotator": a.annotator, "answers": a.answers,
                        "skipped": a.skipped, "unsure": a.unsure, "rechecks": a.rechecks,
                        "recheck_agreements": a.recheck_agreements,
                        "gold_checks": a.gold_checks, "gold_agreements": a.gold_agreements,
                        **{k: getattr(a, k) if a.HasField(k) else None for k in kappa}}
                       for a in s.annotators],
        "model": model,
        "forecast": forecast(s.forecast) if s.HasField("forecast") else None,
        "learning_curve": [{"labels": p.labels, "labels_given": p.labels_given,
                            "model_version": p.model_version,
                            "estimate": _optional_estimate(p),
                            "validation": _optional_metrics(p, "validation"),
                            "evaluation": _optional_metrics(p, "evaluation")}
                           for p in s.learning_curve],
        "extraction": {"pending": e.pending, "seconds_per_item": e.seconds_per_item,
                       "eta_seconds": e.eta_seconds, "failed": e.failed,
                       "retrying": e.retrying},
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
