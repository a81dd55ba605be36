"""The trainer's records to and from the generated protobuf messages: the one place,
besides the servicer, that knows the wire format."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any, TypeVar

from hitl.v1 import common_pb2, feature_pb2, trainer_pb2
from trainer_service.domain import (
    Annotation,
    AnnotatorStats,
    Counts,
    Estimate,
    Forecast,
    Label,
    LeasedItem,
    LoadingProgress,
    Metrics,
    ModelSummary,
    Recorded,
    ScoringProgress,
    Status,
)
from trainer_service.features.records import Evidence, ImageError, ImageSource
from trainer_service.intake import Imported, ImportRow
from trainer_service.outputs.records import (
    Classification,
    ModelEntry,
    PredictionBatch,
    PredictionPage,
)
from trainer_service.tasks.spec import API, FILE, SETTINGS, TaskSpec

E = TypeVar("E", bound=enum.IntEnum)


def to_enum(kind: type[E], value: int) -> E:
    """A received enum value; one this version does not know reads as UNSPECIFIED (proto3
    enums are open), which the core refuses like a missing value."""
    try:
        return kind(value)
    except ValueError:
        return kind(0)


def _timestamp_ns(seconds: float) -> int:
    return int(seconds * 1e9)


def loading_progress(p: LoadingProgress) -> trainer_pb2.LoadingProgress:
    return trainer_pb2.LoadingProgress(state=_wire(p.state), message=p.message,
                                       fraction=p.fraction, items_loaded=p.items_loaded)


def metrics(m: Metrics) -> common_pb2.Metrics | None:
    """None (the field left unset) for a split with no item: nothing was measured, which
    a 0 would report as a failing model."""
    if m.positives + m.negatives == 0:
        return None
    return common_pb2.Metrics(**asdict(m))


def estimate(e: Estimate) -> trainer_pb2.Estimate:
    return trainer_pb2.Estimate(
        f1=e.f1.value, f1_low=e.f1.low, f1_high=e.f1.high,
        precision=e.precision.value, precision_low=e.precision.low,
        precision_high=e.precision.high, recall=e.recall.value, recall_low=e.recall.low,
        recall_high=e.recall.high, labels=e.labels, population=e.population,
        source=_wire(e.source))


def forecast(f: Forecast) -> trainer_pb2.Forecast:
    return trainer_pb2.Forecast(reached=f.reached, labels=f.labels, low=f.low, high=f.high,
                                points=f.points, more_answers=f.more_answers)


def model_summary(s: ModelSummary) -> trainer_pb2.ModelSummary:
    summary = trainer_pb2.ModelSummary(version=s.version, labels=s.labels,
                                       validation=metrics(s.validation),
                                       evaluation=metrics(s.evaluation),
                                       labels_given=s.labels_given, pinned=s.pinned)
    summary.create_time.FromNanoseconds(_timestamp_ns(s.create_time))
    if s.estimate is not None:
        summary.estimate.CopyFrom(estimate(s.estimate))
    return summary


def counts(c: Counts) -> trainer_pb2.Counts:
    return trainer_pb2.Counts(**asdict(c))


def annotator_stats(a: AnnotatorStats) -> trainer_pb2.AnnotatorStats:
    # The kappas are optional fields: None (undefined) leaves them unset.
    return trainer_pb2.AnnotatorStats(**{k: v for k, v in asdict(a).items() if v is not None})


def status(s: Status) -> trainer_pb2.Status:
    message = trainer_pb2.Status(
        label_id=s.label_id, display_name=s.display_name, task=s.task, question=s.question,
        loading=loading_progress(s.loading), counts=counts(s.counts), target_f1=s.target_f1,
        min_per_class=s.min_per_class,
        extraction=trainer_pb2.Extraction(pending=s.extraction.pending,
                                          seconds_per_item=s.extraction.seconds_per_item,
                                          eta_seconds=s.extraction.eta_seconds,
                                          failed=s.extraction.failed,
                                          retrying=s.extraction.retrying))
    if s.model is not None:
        message.model.CopyFrom(model_summary(s.model))
    if s.scoring is not None:
        message.scoring.CopyFrom(scoring(s.scoring))
    for point in s.learning_curve:
        added = message.learning_curve.add(
            labels=point.labels, model_version=point.version,
            validation=metrics(point.validation), evaluation=metrics(point.evaluation),
            labels_given=point.labels_given)
        if point.estimate is not None:
            added.estimate.CopyFrom(estimate(point.estimate))
    if s.forecast is not None:
        message.forecast.CopyFrom(forecast(s.forecast))
    message.annotators.extend(annotator_stats(a) for a in s.annotators)
    return message


def item(i: LeasedItem) -> trainer_pb2.Item:
    message = trainer_pb2.Item(
        id=i.id, image_url=i.image_url, thumbnail_url=i.thumbnail_url,
        strategy=_wire(i.strategy), score=i.score, model_version=i.model_version,
        known_label=_wire(i.known_label))
    message.lease_expire_time.FromNanoseconds(_timestamp_ns(i.lease_expires))
    if i.evidence is not None:
        x1, y1, x2, y2 = i.evidence.box
        message.evidence.score = i.evidence.score
        message.evidence.box.CopyFrom(common_pb2.BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2))
    return message


def annotation(a: Annotation) -> trainer_pb2.Annotation:
    message = trainer_pb2.Annotation(
        annotation_id=a.annotation_id, item_id=a.item_id, label=_wire(a.label),
        annotator=a.annotator, strategy=_wire(a.strategy), model_version=a.model_version,
        duration_ms=a.duration_ms, undone=a.undone, split=_wire(a.split), note=a.note)
    message.create_time.FromNanoseconds(_timestamp_ns(a.time))
    return message


def recorded(r: Recorded) -> trainer_pb2.AddAnnotationResponse:
    response = trainer_pb2.AddAnnotationResponse(annotation=annotation(r.annotation),
                                                 duplicate=r.duplicate)
    if r.gold_check is not None:
        response.gold_check.known_label = _wire(r.gold_check.known_label)
        response.gold_check.agrees = r.gold_check.agrees
    return response


def _wire(value: enum.IntEnum) -> Any:
    """An enum as the plain int the message fields take."""
    return int(value)


def _wire_int(value: int) -> Any:
    return value


# -- classifications, predictions, models ---------------------------------------------


def image_sources(refs: Iterable[feature_pb2.ImageRef]) -> list[ImageSource]:
    return [ImageSource(r.id, url=r.url if r.WhichOneof("source") == "url" else "",
                        data=r.data if r.WhichOneof("source") == "data" else b"")
            for r in refs]


def evidence(e: Evidence) -> common_pb2.DetectorEvidence:
    message = common_pb2.DetectorEvidence(score=e.score, count=e.count)
    if e.box is not None:
        x1, y1, x2, y2 = e.box
        message.box.CopyFrom(common_pb2.BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2))
    return message


def item_error(e: ImageError) -> feature_pb2.ItemError:
    names = feature_pb2.ErrorKind.keys()
    kind = f"ERROR_KIND_{e.kind}" if f"ERROR_KIND_{e.kind}" in names else "ERROR_KIND_INTERNAL"
    return feature_pb2.ItemError(kind=_wire_int(feature_pb2.ErrorKind.Value(kind)),
                                 message=e.message, retryable=e.retryable)


def classify_response(results: list[Classification], version: str,
                      threshold: float) -> trainer_pb2.ClassifyResponse:
    response = trainer_pb2.ClassifyResponse(model_version=version, threshold=threshold)
    for r in results:
        out = response.results.add(id=r.id)
        if r.error is not None:
            out.error.CopyFrom(item_error(r.error))
            continue
        out.classification.CopyFrom(trainer_pb2.Classification(
            probability=r.probability, decision=_wire(r.decision),
            model_version=r.model_version))
        if r.evidence is not None:
            out.classification.evidence.CopyFrom(evidence(r.evidence))
    return response


def prediction_batch(b: PredictionBatch) -> trainer_pb2.ExportPredictionsResponse:
    # Columns as packed repeated fields: the cheapest way to move 100k rows.
    return trainer_pb2.ExportPredictionsResponse(
        model_version=b.model_version, threshold=b.threshold, item_ids=b.item_ids,
        probabilities=b.probabilities.tolist(), labels=[_wire(v) for v in b.labels],
        known_labels=[_wire(v) for v in b.known_labels], splits=[_wire(v) for v in b.splits],
        total=b.total)


def prediction_page(p: PredictionPage) -> trainer_pb2.ListPredictionsResponse:
    return trainer_pb2.ListPredictionsResponse(
        items=[trainer_pb2.PredictedItem(id=i.id, image_url=i.image_url,
                                         thumbnail_url=i.thumbnail_url,
                                         probability=i.probability, decision=_wire(i.decision))
               for i in p.items],
        next_page_token=p.next_page_token, model_version=p.model_version,
        threshold=p.threshold, total=p.total)


def scoring(p: ScoringProgress) -> trainer_pb2.Scoring:
    message = trainer_pb2.Scoring(
        state=_wire(p.state), total=p.total, embedded=p.embedded, failed=p.failed,
        items_per_second=p.items_per_second, eta_seconds=p.eta_seconds, message=p.message,
        scored=p.scored)
    message.start_time.FromNanoseconds(_timestamp_ns(p.start_time))
    return message


def model_record(e: ModelEntry) -> trainer_pb2.ModelRecord:
    x = e.extractor
    record = trainer_pb2.ModelRecord(
        version=e.version, labels=e.labels, positives=e.positives, negatives=e.negatives,
        validation=metrics(e.validation), evaluation=metrics(e.evaluation),
        extractor=feature_pb2.ExtractorInfo(
            name=str(x.get("name", "")), version=str(x.get("version", "")),
            dimension=int(x.get("dimension", 0)),
            embedding_dimension=int(x.get("embedding_dimension", 0)),
            target_class=str(x.get("detector_class", "")),
            evidence_version=str(x.get("evidence_version", ""))),
        active=e.active, threshold=e.threshold, compatible=e.compatible)
    record.create_time.FromNanoseconds(_timestamp_ns(e.create_time))
    if e.estimate is not None:
        record.estimate.CopyFrom(estimate(e.estimate))
    return record


def import_rows(labels: Iterable[trainer_pb2.ImportedLabel]) -> list[ImportRow]:
    return [ImportRow(r.annotation_id, r.item_id, to_enum(Label, r.label), r.note)
            for r in labels]


def imported(result: Imported) -> trainer_pb2.ImportLabelsResponse:
    return trainer_pb2.ImportLabelsResponse(
        recorded=result.recorded, duplicates=result.duplicates,
        refused=[trainer_pb2.RefusedLabel(index=i, message=m) for i, m in result.refused])


# -- tasks -------------------------------------------------------------------------------

_SOURCES = {SETTINGS: trainer_pb2.TASK_SOURCE_SETTINGS, FILE: trainer_pb2.TASK_SOURCE_FILE,
            API: trainer_pb2.TASK_SOURCE_API}


def task(spec: TaskSpec, state: str, is_default: bool) -> trainer_pb2.Task:
    values = {k: v for k, v in spec.as_dict().items() if k != "source"}
    return trainer_pb2.Task(**values, source=_wire_int(_SOURCES[spec.source]),
                            is_default=is_default, state=state)


def task_values(message: trainer_pb2.Task) -> dict[str, Any]:
    """What a CreateTask request defines (unset numbers and texts left to the defaults)."""
    values: dict[str, Any] = {
        "name": message.name, "question": message.question, "guidelines": message.guidelines,
        "positive_class": message.positive_class}
    for name in ("display_name", "detector_class"):
        if getattr(message, name):
            values[name] = getattr(message, name)
    if message.target_f1:
        values["target_f1"] = message.target_f1
    if message.mix:
        values["mix"] = message.mix
    return values
