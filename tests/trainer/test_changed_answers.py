"""Changing an earlier answer on a real trainer process: the annotator's undo and new
answer keep how the item was served (its strategy and model), the export lists the item
once with the new answer, and an answer keeps the time it was given (bounded)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.reliability import stack as rs
from trainer_service.store.validation import MAX_GIVEN_AGE_S

POS, NEG = common_pb2.LABEL_POSITIVE, common_pb2.LABEL_NEGATIVE


def _at(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def test_a_changed_answer_keeps_its_strategy_and_is_exported_once_with_its_time(
        shared_feature, tiles: Path, tmp_path: Path):
    trainer = rs.trainer_service(tmp_path, shared_feature.address, tiles, TRAINER_MIX="random=1")
    rs.start(trainer)
    try:
        with rs.channel(trainer.address) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            first, second, third, fourth = stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
                annotator="ann", count=4), timeout=10).items
            assert first.strategy != trainer_pb2.STRATEGY_UNSPECIFIED

            def answer(item: trainer_pb2.Item, label: int, **extra):  # type: ignore[no-untyped-def]
                return stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                    annotation_id=uuid.uuid4().hex, item_id=item.id, label=label,
                    annotator="ann", **extra), timeout=10).annotation

            given = answer(first, POS)
            stub.UndoAnnotation(trainer_pb2.UndoAnnotationRequest(
                annotation_id=given.annotation_id, annotator="ann"), timeout=10)
            # The lease went with the first answer; the new one is still the same serving.
            changed = answer(first, NEG)
            assert (changed.strategy, changed.model_version) == (given.strategy,
                                                                  given.model_version)

            now = time.time()
            an_hour_ago = answer(second, POS, given_time=_at(now - 3600))
            tomorrow = answer(third, NEG, given_time=_at(now + 86400))
            a_month_ago = answer(fourth, NEG, given_time=_at(now - 30 * 86400))
            exported = [a for batch in stub.ExportLabels(trainer_pb2.ExportLabelsRequest(),
                                                         timeout=10) for a in batch.annotations]
    finally:
        trainer.stop()
    assert [(a.item_id, a.label) for a in exported if a.item_id == first.id] == [(first.id, NEG)]
    assert abs(an_hour_ago.create_time.ToNanoseconds() / 1e9 - (now - 3600)) < 1
    assert now - 1 <= tomorrow.create_time.ToNanoseconds() / 1e9 <= time.time() + 1
    assert abs(a_month_ago.create_time.ToNanoseconds() / 1e9 - (now - MAX_GIVEN_AGE_S)) < 5
