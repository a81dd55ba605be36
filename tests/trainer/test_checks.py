"""Known-answer checks on a real trainer process: the first answer an annotator gives to
a gold item decides the check, so answering wrong, undoing and answering right ("Fix
it") stays a disagreement, per annotator, and after a restart too."""

from __future__ import annotations

import uuid
from pathlib import Path

from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.reliability import stack as rs

POS, NEG = common_pb2.LABEL_POSITIVE, common_pb2.LABEL_NEGATIVE


def _other(label: int) -> int:
    return NEG if label == POS else POS


def _checks(status: trainer_pb2.Status) -> dict[str, tuple[int, int]]:
    return {a.annotator: (a.gold_checks, a.gold_agreements) for a in status.annotators}


def test_a_fixed_check_stays_a_disagreement_per_annotator_and_across_a_restart(
        shared_feature, tiles: Path, tmp_path: Path):
    # Only gold items are served, so every lease is a check with its known answer.
    trainer = rs.trainer_service(tmp_path, shared_feature.address, tiles,
                                 TRAINER_MIX="gold=1")
    rs.start(trainer)
    try:
        with rs.channel(trainer.address) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)

            def lease(annotator: str, n: int) -> list[trainer_pb2.Item]:
                items = stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
                    annotator=annotator, count=n), timeout=10).items
                assert len(items) == n
                assert all(i.strategy == trainer_pb2.STRATEGY_GOLD for i in items)
                return list(items)

            def answer(annotator: str, item: trainer_pb2.Item, label: int):  # type: ignore[no-untyped-def]
                return stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                    annotation_id=uuid.uuid4().hex, item_id=item.id, label=label,
                    annotator=annotator), timeout=10)

            first, second = lease("ann", 2)
            wrong = answer("ann", first, _other(first.known_label))
            assert wrong.gold_check.agrees is False
            # "Fix it": the wrong answer is withdrawn and the right one recorded. The
            # answer in force is now right, and the new answer's own check agrees...
            stub.UndoAnnotation(trainer_pb2.UndoAnnotationRequest(
                annotation_id=wrong.annotation.annotation_id, annotator="ann"), timeout=10)
            fixed = answer("ann", first, first.known_label)
            assert fixed.gold_check.agrees is True
            assert answer("ann", second, second.known_label).gold_check.agrees is True
            (bee,) = lease("bee", 1)
            assert answer("bee", bee, bee.known_label).gold_check.agrees is True

            # ...but the check was decided by the first answer.
            status = stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10).status
            assert _checks(status) == {"ann": (2, 1), "bee": (1, 1)}
            assert (status.counts.gold_checks, status.counts.gold_agreements) == (3, 2)
            in_force = {a.item_id: a.label for batch in stub.ExportLabels(
                trainer_pb2.ExportLabelsRequest(), timeout=10) for a in batch.annotations}
            assert in_force[first.id] == first.known_label

        trainer.stop()
        rs.start(trainer)
        status = rs.wait_status(trainer.address, lambda s: s.loading.state == 2,
                                what="dataset loaded after the restart")
        assert _checks(status) == {"ann": (2, 1), "bee": (1, 1)}
        assert (status.counts.gold_checks, status.counts.gold_agreements) == (3, 2)
    finally:
        trainer.stop()
