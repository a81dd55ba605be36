"""The plain definition of one class's SSD detections, which the extractor's fast
evidence rows (`ssd.every_class_evidence`) must equal: every anchor scored for the class,
those under MIN_SCORE dropped, every other one decoded and suppressed."""

from __future__ import annotations

import numpy as np

from feature_service.extractors.ssd import (
    BICYCLE,
    MIN_SCORE,
    anchors,
    decode_boxes,
    nms,
    sigmoid,
)


def class_detections(raw_boxes: np.ndarray, logits: np.ndarray,
                     class_index: int = BICYCLE) -> tuple[np.ndarray, np.ndarray]:
    """One image's detections of one class: scores (K,) and normalised boxes (K, 4)."""
    scores = sigmoid(logits[:, class_index].astype(np.float32))
    candidates = np.flatnonzero(scores >= MIN_SCORE)
    if len(candidates) == 0:
        return np.zeros(0, np.float32), np.zeros((0, 4), np.float32)
    boxes = decode_boxes(raw_boxes[candidates], anchors()[candidates])
    keep = nms(scores[candidates], boxes)
    return scores[candidates][keep], boxes[keep]
