"""What the trainer refuses in an annotation request before it reaches the log: each rule
answered INVALID_ARGUMENT with a message naming the field."""

from __future__ import annotations

from trainer_service.domain import ANSWERS, PASSES, Label, TrainerError

MAX_ID_CHARS = 256
MAX_NOTE_CHARS = 200


def check_annotation(annotation_id: str, label: Label, annotator: str, duration_ms: int,
                     note: str) -> None:
    if not annotation_id:
        raise TrainerError("INVALID_ARGUMENT", "annotation_id is required")
    if label not in ANSWERS | PASSES:
        raise TrainerError("INVALID_ARGUMENT", "label must be LABEL_POSITIVE, "
                           "LABEL_NEGATIVE, LABEL_SKIP or LABEL_UNSURE")
    if duration_ms < 0:
        raise TrainerError("INVALID_ARGUMENT", "duration_ms must be >= 0")
    if len(note) > MAX_NOTE_CHARS:
        raise TrainerError("INVALID_ARGUMENT", f"note is longer than {MAX_NOTE_CHARS} characters")
    for name, value in (("annotation_id", annotation_id), ("annotator", annotator)):
        if len(value) > MAX_ID_CHARS:
            raise TrainerError("INVALID_ARGUMENT",
                               f"{name} is longer than {MAX_ID_CHARS} characters")
