"""The trainer's records and enums against the generated messages: every enum value is
the proto's (stored rows and model files depend on it), and conversions keep every
field."""

from __future__ import annotations

import enum

import pytest

from hitl.v1 import common_pb2, trainer_pb2
from trainer_service import convert
from trainer_service.domain import (
    Annotation,
    Counts,
    DatasetKind,
    EstimateSource,
    ExtractionProgress,
    GoldCheck,
    Label,
    LeasedItem,
    LoadingProgress,
    LoadingState,
    Metrics,
    ModelSummary,
    Recorded,
    Split,
    Status,
    Strategy,
)

ENUMS = [(Split, trainer_pb2.Split, "SPLIT_"), (Label, common_pb2.Label, "LABEL_"),
         (Strategy, trainer_pb2.Strategy, "STRATEGY_"),
         (LoadingState, trainer_pb2.LoadingState, "LOADING_STATE_"),
         (DatasetKind, trainer_pb2.DatasetKind, "DATASET_KIND_"),
         (EstimateSource, trainer_pb2.EstimateSource, "ESTIMATE_SOURCE_")]


@pytest.mark.parametrize(("ours", "proto", "prefix"), ENUMS,
                         ids=lambda e: getattr(e, "__name__", ""))
def test_every_enum_value_is_the_protos(ours: type[enum.IntEnum], proto, prefix: str) -> None:  # type: ignore[no-untyped-def]
    assert {prefix + m.name: m.value for m in ours} == dict(proto.items())


def test_unknown_received_values_read_as_unspecified() -> None:
    assert convert.to_enum(Label, 2) is Label.NEGATIVE
    assert convert.to_enum(Label, 7) is Label.UNSPECIFIED
    assert convert.to_enum(DatasetKind, -3) is DatasetKind.UNSPECIFIED


def test_status_keeps_every_field() -> None:
    m = Metrics(f1=0.8, precision=0.7, recall=0.9, roc_auc=0.95, average_precision=0.85,
                threshold=0.4, positives=3, negatives=7)
    first = ModelSummary("v0001", 10, m, Metrics(), 1_700_000_000.5)
    model = ModelSummary("v0002", 20, m, m, 1_700_000_100.0)
    status = convert.status(Status(
        label_id="/m/0199g", display_name="Bicycle",
        loading=LoadingProgress(LoadingState.READY, "loaded 5 items", 1.0, 5),
        counts=Counts(5, 3, 1, 1, 2, 1, 1, 4, 3), target_f1=0.85,
        extraction=ExtractionProgress(2, 0.5, 1.0), model=model,
        learning_curve=[first, model]))
    assert status.loading.state == trainer_pb2.LOADING_STATE_READY
    assert status.loading.items_loaded == 5 and status.loading.message == "loaded 5 items"
    assert (status.counts.embedded, status.counts.gold_agreements) == (2, 3)
    assert status.model.version == "v0002" and status.model.validation.f1 == pytest.approx(0.8)
    assert status.model.create_time.ToNanoseconds() == 1_700_000_100 * 10**9
    assert [(p.model_version, p.labels) for p in status.learning_curve] == [
        ("v0001", 10), ("v0002", 20)]
    # A split with no item measured nothing: no metrics at all, rather than zeros.
    assert not status.learning_curve[0].HasField("evaluation")
    assert (status.extraction.pending, status.extraction.eta_seconds) == (2, 1.0)
    assert status.target_f1 == pytest.approx(0.85)
    empty = convert.status(Status("/m/x", "X", LoadingProgress(LoadingState.LOADING, "", -1, 0),
                                  Counts(), 0.85, ExtractionProgress(0, 0.0, 0.0)))
    assert not empty.HasField("model") and not empty.learning_curve


def test_items_annotations_and_gold_checks() -> None:
    item = convert.item(LeasedItem("a", "https://x/a.jpg", "", Strategy.GOLD, 0.0, "",
                                   1_700_000_000.25, Label.POSITIVE))
    assert (item.strategy, item.known_label) == (trainer_pb2.STRATEGY_GOLD,
                                                 common_pb2.LABEL_POSITIVE)
    assert item.lease_expire_time.ToNanoseconds() == int(1_700_000_000.25 * 1e9)
    record = Annotation("id1", "a", Label.NEGATIVE, "ann", Strategy.GOLD, "v3", 1200,
                        Split.VALIDATION, 1_700_000_000.0)
    response = convert.recorded(Recorded(record, False, GoldCheck(Label.POSITIVE, False)))
    assert response.annotation.split == trainer_pb2.SPLIT_VALIDATION
    assert response.annotation.label == common_pb2.LABEL_NEGATIVE
    assert (response.annotation.duration_ms, response.annotation.model_version) == (1200, "v3")
    assert response.gold_check.known_label == common_pb2.LABEL_POSITIVE
    assert not response.gold_check.agrees and not response.duplicate
    assert not convert.recorded(Recorded(record, True)).HasField("gold_check")


def test_evidence_notes_new_counts_and_annotator_agreement() -> None:
    from trainer_service.domain import AnnotatorStats, Evidence

    item = convert.item(LeasedItem("a", "", "", Strategy.REVIEW, 0.9, "v2", 1.0,
                                   evidence=Evidence(0.75, (0.1, 0.2, 0.6, 0.8))))
    assert item.strategy == trainer_pb2.STRATEGY_REVIEW
    assert item.evidence.score == pytest.approx(0.75)
    assert (item.evidence.box.x1, item.evidence.box.y2) == (pytest.approx(0.1),
                                                            pytest.approx(0.8))
    assert not convert.item(LeasedItem("b", "", "", Strategy.RANDOM, 0, "", 1.0)).HasField(
        "evidence")
    note = convert.annotation(Annotation("n", "a", Label.UNSURE, "ann", Strategy.RECHECK, "",
                                         0, Split.POOL, 1.0, note="blurry"))
    assert (note.label, note.note, note.strategy) == (common_pb2.LABEL_UNSURE, "blurry",
                                                      trainer_pb2.STRATEGY_RECHECK)
    status = convert.status(Status(
        "/m/x", "X", LoadingProgress(LoadingState.READY, "", 1.0, 5),
        Counts(skipped=2, unsure=1, reviewed=4, corrected=3, contested=1), 0.85,
        ExtractionProgress(0, 0.0, 0.0),
        annotators=[AnnotatorStats("ann", answers=9, rechecks=2, recheck_agreements=2,
                                   self_kappa=None, gold_checks=3, gold_agreements=2,
                                   gold_kappa=0.25)]))
    c = status.counts
    assert (c.skipped, c.unsure, c.reviewed, c.corrected, c.contested) == (2, 1, 4, 3, 1)
    (ann,) = status.annotators
    assert (ann.annotator, ann.answers, ann.gold_agreements) == ("ann", 9, 2)
    assert not ann.HasField("self_kappa") and ann.gold_kappa == pytest.approx(0.25)
