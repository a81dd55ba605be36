"""Anchors and box decoding for MediaPipe's Open Images SSD-MobileNetV2 (objectron package).

The model outputs raw box encodings and class logits per anchor; MediaPipe decodes them
in its calculators rather than in the model, so the same steps live here: SSD anchors as
MediaPipe's SsdAnchorsCalculator makes them, the TensorsToDetections box decoding, sigmoid
scores, and a plain non-maximum suppression for counting distinct detections.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from hitl.evidence import COUNT_THRESHOLD, evidence_rows

INPUT_SIZE = 300
NUM_CLASSES = 24
BICYCLE = 1  # index in the model's label map (0 is the background "???")
STRIDES = (16, 32, 64, 128, 256, 512)
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
INTERPOLATED_ASPECT_RATIO = 1.0
Y_SCALE, X_SCALE, H_SCALE, W_SCALE = 10.0, 10.0, 5.0, 5.0
NUM_ANCHORS = 1917

# Detections below this score are dropped before NMS, as torchvision's detectors do by
# default (box_score_thresh=0.05), so both extractors report evidence the same way.
MIN_SCORE = 0.05
NMS_IOU = 0.45


def _scale(index: int) -> float:
    return MIN_SCALE + (MAX_SCALE - MIN_SCALE) * index / (len(STRIDES) - 1)


@cache
def anchors() -> np.ndarray:
    """(1917, 4) anchors as (y_centre, x_centre, height, width), normalised to [0, 1].

    Every layer has its own stride, so each layer is one group in MediaPipe's terms.
    """
    rows = []
    for layer, stride in enumerate(STRIDES):
        scale = _scale(layer)
        if layer == 0:
            # The lowest layer has 3 reduced boxes: a small square and two at its scale.
            shapes = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            shapes = [(scale, ratio) for ratio in ASPECT_RATIOS]
            scale_next = 1.0 if layer == len(STRIDES) - 1 else _scale(layer + 1)
            shapes.append((math.sqrt(scale * scale_next), INTERPOLATED_ASPECT_RATIO))
        size = math.ceil(INPUT_SIZE / stride)
        for y in range(size):
            for x in range(size):
                for box_scale, ratio in shapes:
                    root = math.sqrt(ratio)
                    rows.append(((y + 0.5) / size, (x + 0.5) / size,
                                 box_scale / root, box_scale * root))
    out = np.asarray(rows, dtype=np.float32)
    assert len(out) == NUM_ANCHORS, len(out)
    return out


def decode_boxes(raw: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Raw (N, 4: y, x, h, w) encodings against their anchors to (N, 4: x1, y1, x2, y2)."""
    y = raw[:, 0] / Y_SCALE * anchor[:, 2] + anchor[:, 0]
    x = raw[:, 1] / X_SCALE * anchor[:, 3] + anchor[:, 1]
    h = np.exp(raw[:, 2] / H_SCALE) * anchor[:, 2]
    w = np.exp(raw[:, 3] / W_SCALE) * anchor[:, 3]
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    p: np.ndarray = 1.0 / (1.0 + np.exp(-x))  # x's dtype (numpy's ufuncs type as Any)
    return p


def nms(scores: np.ndarray, boxes: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first (of equal
    scores, the lower index first, so the same boxes win in any subset)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(int(best))
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def every_class_evidence(raw_boxes: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """One image's (NUM_CLASSES - 1, EVIDENCE_DIM) evidence rows of classes 1..23, in
    order. A class's detections are every anchor scored for it (like torchvision's
    per-class post-processing), those under MIN_SCORE dropped and the rest suppressed;
    its row (`hitl.evidence`) needs only the best detection, which suppression always
    keeps, and how many kept ones score above COUNT_THRESHOLD. Greedy suppression keeps or
    drops a box by higher-scored boxes alone, so it runs only among those: the same rows
    as decoding and suppressing every candidate of every class (tests/feature/
    ssd_reference.py), which took 2.8 ms an image, a tenth of the service's work."""
    scores = sigmoid(logits[:, 1:NUM_CLASSES].astype(np.float32))
    best = np.argmax(scores, axis=0)
    best_scores = scores[best, np.arange(NUM_CLASSES - 1)]
    counts = np.zeros(NUM_CLASSES - 1, np.float32)
    for k in np.flatnonzero(best_scores > COUNT_THRESHOLD):
        above = np.flatnonzero(scores[:, k] > COUNT_THRESHOLD)
        boxes = decode_boxes(raw_boxes[above], anchors()[above])
        counts[k] = len(nms(scores[above, k], boxes))
    rows = evidence_rows(best_scores, decode_boxes(raw_boxes[best], anchors()[best]), counts)
    rows[best_scores < MIN_SCORE] = 0.0
    return rows
