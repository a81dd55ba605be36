"""What was served to whom, on a real trainer process and its SQLite file: an answer is
taken only within its lease and the grace after it, an annotator may still change their
own earlier answer once the lease is over, and the record of what was served survives a
crash (a retry after it is the same duplicate, a served item is still answerable with the
strategy it was served by, and an item never served is still refused)."""

from __future__ import annotations

import csv
import time
import uuid
from pathlib import Path

import grpc
import pytest

from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.reliability import stack as rs

POS, NEG = common_pb2.LABEL_POSITIVE, common_pb2.LABEL_NEGATIVE


class Calls:
    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = trainer_pb2_grpc.TrainerServiceStub(channel)

    def lease(self, annotator: str, n: int) -> list[trainer_pb2.Item]:
        return list(self.stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
            annotator=annotator, count=n), timeout=10).items)

    def answer(self, annotator: str, item_id: str, label: int,
               annotation_id: str | None = None) -> trainer_pb2.AddAnnotationResponse:
        return self.stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
            annotation_id=annotation_id or uuid.uuid4().hex, item_id=item_id, label=label,
            annotator=annotator), timeout=10)

    def refused(self, annotator: str, item_id: str) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as caught:
            self.answer(annotator, item_id, POS)
        return caught.value.code()


def _loaded(status: trainer_pb2.Status) -> bool:
    return status.loading.state == trainer_pb2.LOADING_STATE_READY


def test_an_answer_is_taken_within_its_lease_and_grace_and_a_change_after(
        shared_feature, tiles: Path, tmp_path: Path):
    """Seen failing before: the answer long after the lease ended was accepted."""
    trainer = rs.trainer_service(tmp_path, shared_feature.address, tiles,
                                 TRAINER_LEASE_S="3", TRAINER_ANSWER_GRACE_S="2")
    rs.start(trainer)
    try:
        rs.wait_status(trainer.address, _loaded, what="dataset loaded")
        with rs.channel(trainer.address) as channel:
            calls = Calls(channel)
            first, second = calls.lease("ann", 2)
            answered = calls.answer("ann", first.id, POS)
            time.sleep(5.5)  # past the lease and the grace
            assert calls.refused("ann", second.id) == grpc.StatusCode.PERMISSION_DENIED
            # The page's "change an earlier answer": undo it, answer again; the new answer
            # keeps why the item was served.
            calls.stub.UndoAnnotation(trainer_pb2.UndoAnnotationRequest(
                annotation_id=answered.annotation.annotation_id, annotator="ann"), timeout=10)
            changed = calls.answer("ann", first.id, NEG)
            assert changed.annotation.label == NEG
            assert changed.annotation.strategy == answered.annotation.strategy == first.strategy
    finally:
        trainer.stop()


def test_what_was_served_survives_a_crash(shared_feature, tiles: Path, tmp_path: Path):
    """Seen failing before: after the restart the served item's answer lost its strategy
    (the lease was only in memory) and an item never served was accepted."""
    trainer = rs.trainer_service(tmp_path, shared_feature.address, tiles)
    rs.start(trainer)
    try:
        rs.wait_status(trainer.address, _loaded, what="dataset loaded")
        with rs.channel(trainer.address) as channel:
            calls = Calls(channel)
            items = calls.lease("ann", 3)
            retried = uuid.uuid4().hex
            calls.answer("ann", items[0].id, POS, retried)
        rs.kill(trainer)
        rs.start(trainer)
        rs.wait_status(trainer.address, _loaded, what="dataset loaded after the crash")
        with rs.channel(trainer.address) as channel:
            calls = Calls(channel)
            again = calls.answer("ann", items[0].id, POS, retried)
            assert again.duplicate
            after = calls.answer("ann", items[1].id, NEG)
            assert after.annotation.strategy == items[1].strategy != 0
            with tiles.open() as f:
                every = [row["id"] for row in csv.DictReader(f)]
            never = next(i for i in every if i not in {item.id for item in items})
            assert calls.refused("ann", never) == grpc.StatusCode.PERMISSION_DENIED
    finally:
        trainer.stop()
