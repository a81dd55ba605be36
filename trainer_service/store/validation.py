"""What the trainer refuses in an annotation request before it reaches the log: each rule
answered INVALID_ARGUMENT with a message naming the field."""

from __future__ import annotations

import grpc

from trainer_service.domain import ANSWERS, PASSES, Label, TrainerError

MAX_ID_CHARS = 256
MAX_NOTE_CHARS = 200
# A label queued in a browser keeps the time it was given, within reason: a clock ahead
# counts as now, one far behind as this long ago.
MAX_GIVEN_AGE_S = 7 * 24 * 3600.0


def given_time(given_at: float | None, now: float) -> float:
    """When an answer was given: the client's time bounded to [now - a week, now]."""
    return now if given_at is None else min(now, max(given_at, now - MAX_GIVEN_AGE_S))


def check_annotation(annotation_id: str, label: Label, annotator: str, duration_ms: int,
                     note: str) -> None:
    if not annotation_id:
        raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT, "annotation_id is required")
    if label not in ANSWERS | PASSES:
        raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT, "label must be LABEL_POSITIVE, "
                           "LABEL_NEGATIVE, LABEL_SKIP or LABEL_UNSURE")
    if duration_ms < 0:
        raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT, "duration_ms must be >= 0")
    if len(note) > MAX_NOTE_CHARS:
        raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"note is longer than {MAX_NOTE_CHARS} characters")
    for name, value in (("annotation_id", annotation_id), ("annotator", annotator)):
        if len(value) > MAX_ID_CHARS:
            raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"{name} is longer than {MAX_ID_CHARS} characters")
