"""The extractors on real images: the `lite` models as converted by `make models`, the
SSD decoding against the TensorFlow Lite interpreter's own output, the evidence logic on
constructed detector outputs, the ResNeXt50 + Faster R-CNN architectures with random
weights, the registry's refusal to run without weights, and fetch_models."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.untrained import untrained_resnext_frcnn
from feature_service import fetch_models
from feature_service.extractors import (
    EVIDENCE_DIM,
    EXTRACTORS,
    MissingWeightsError,
    evidence_vector,
    load_extractor,
    ssd,
)
from feature_service.extractors.base import Extractor, Settings
from feature_service.extractors.classes import LITE_CLASSES
from feature_service.extractors.resnext_frcnn import (
    COCO_BICYCLE,
    COCO_CLASSES,
    COCO_LABEL_IDS,
    frcnn_evidence,
)
from feature_service.extractors.runtime import reduced_dtype
from tests.feature.ssd_reference import class_detections
from tests.support import MODELS, PHOTOS, TILES, require_data, require_lite_models

HERE = Path(__file__).parent
# The bicycle in dog.jpg (768x576), x1, y1, x2, y2 in pixels, marked by hand.
DOG_BICYCLE = (127, 137, 565, 420)
# The stored vector: the embedding, then every one of the detector's 23 classes' evidence.
LITE_DIM = 1280 + 23 * EVIDENCE_DIM
FRCNN_DIM = 2048 + 80 * EVIDENCE_DIM


def rows(evidence: np.ndarray) -> np.ndarray:
    """Every class's evidence rows of stored vectors' evidence part: (..., classes, 10)."""
    return evidence.reshape(*evidence.shape[:-1], -1, EVIDENCE_DIM)


def coco_row(label: int) -> int:
    return COCO_LABEL_IDS.index(label)


def lite_row(name: str) -> int:
    return next(i for i, c in enumerate(LITE_CLASSES) if c.name == name)


def iou(a: np.ndarray | tuple, b: np.ndarray | tuple) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def tiles(source_class: str, count: int) -> list[Path]:
    require_data(TILES)
    with (TILES / "labels.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["source_class"] == source_class]
    return [TILES / r["filename"] for r in rows[:count]]


def vectors(extractor: Extractor, paths: list[Path]) -> np.ndarray:
    return extractor.extract([extractor.prepare(rgb(p)) for p in paths])


@pytest.fixture(scope="module")
def lite() -> Extractor:
    require_lite_models()
    return load_extractor("lite", MODELS)


# --- SSD anchors and decoding (pure) ------------------------------------------------


def test_ssd_anchors_follow_mediapipe_layout() -> None:
    anchors = ssd.anchors()
    assert anchors.shape == (1917, 4)
    # Lowest layer: 19x19 cells x 3 boxes, the first a 0.1 square at the first cell.
    np.testing.assert_allclose(anchors[0], [0.5 / 19, 0.5 / 19, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(anchors[1, 2:], [0.2 / np.sqrt(2), 0.2 * np.sqrt(2)], rtol=1e-6)
    # Last layer: one cell, 6 boxes; the interpolated one has sqrt(0.95 * 1.0) sides.
    last = anchors[-6:]
    np.testing.assert_allclose(last[:, :2], 0.5)
    np.testing.assert_allclose(last[0, 2:], [0.95, 0.95], rtol=1e-6)
    np.testing.assert_allclose(last[-1, 2:], [np.sqrt(0.95)] * 2, rtol=1e-6)


def test_zero_encoding_decodes_to_its_anchor() -> None:
    anchor = ssd.anchors()[[0, 1500]]
    boxes = ssd.decode_boxes(np.zeros((2, 4), np.float32), anchor)
    y, x, h, w = anchor.T
    np.testing.assert_allclose(boxes, np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], 1),
                               rtol=1e-6)
    # y, x move by scale/10 of the anchor's size; h, w grow by exp(raw/5).
    moved = ssd.decode_boxes(np.array([[10.0, 0, 5.0, 0]], np.float32), anchor[:1])[0]
    assert moved[1] == pytest.approx(y[0] + h[0] - h[0] * np.e / 2, rel=1e-5)
    assert moved[3] - moved[1] == pytest.approx(h[0] * np.e, rel=1e-5)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 1, 1], [0.05, 0, 1, 1], [2, 2, 3, 3]], np.float32)
    keep = ssd.nms(np.array([0.6, 0.9, 0.7], np.float32), boxes)
    assert keep.tolist() == [1, 2]


# --- evidence logic on constructed detector outputs --------------------------------


def test_evidence_takes_the_label_not_the_detection_index() -> None:
    # The demo read detection number 2 as the bicycle score; here that is a dog (18) at
    # 0.8 while the bicycles are detections 3 and 4. Boxes are in pixels of 200x100.
    detections = {
        "boxes": torch.tensor([[0, 0, 10, 10], [10, 10, 20, 20], [50, 20, 150, 80],
                               [20, 10, 120, 90], [0, 0, 40, 40]], dtype=torch.float32),
        "labels": torch.tensor([1, 3, 18, COCO_BICYCLE, COCO_BICYCLE]),
        "scores": torch.tensor([0.99, 0.9, 0.8, 0.7, 0.3]),
    }
    evidence = rows(frcnn_evidence(detections, width=200, height=100))
    assert evidence.shape == (80, EVIDENCE_DIM)
    np.testing.assert_allclose(evidence[coco_row(COCO_BICYCLE)],
                               [0.7, 0.1, 0.1, 0.6, 0.9, 0.5, 0.8, 0.35, 0.5, 1.0], rtol=1e-6)
    # Every other class has its own row: the dog, the person, the car (3).
    np.testing.assert_allclose(evidence[coco_row(18)],
                               [0.8, 0.25, 0.2, 0.75, 0.8, 0.5, 0.6, 0.5, 0.5, 1.0], rtol=1e-6)
    assert evidence[coco_row(1), 0] == pytest.approx(0.99)
    assert evidence[coco_row(3), 0] == pytest.approx(0.9)
    assert not np.delete(evidence, [coco_row(k) for k in (1, 3, 18, COCO_BICYCLE)], 0).any()


def test_batched_evidence_equals_the_evidence_of_each_image() -> None:
    """The GPU path's post-processing (all images at once, one transfer) gives what the
    evidence of each image alone gives, here on the CPU."""
    from feature_service.extractors.resnext_frcnn import evidence_batch

    rng = np.random.default_rng(4)
    detections, sizes, expected = [], [], []
    for n in (0, 5, 1, 12, 3):
        width, height = int(rng.integers(50, 900)), int(rng.integers(50, 900))
        corners = np.sort(rng.uniform(-20, 950, (n, 2, 2)), axis=1).reshape(n, 4)
        boxes = corners[:, [0, 2, 1, 3]].astype(np.float32)  # x1, y1, x2, y2
        labels = rng.choice([COCO_BICYCLE, 1, 18], n)
        scores = rng.uniform(0.05, 1.0, n).astype(np.float32)
        detections.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels),
                           "scores": torch.from_numpy(scores)})
        sizes.append((width, height))
        scaled = boxes / np.array([width, height, width, height], np.float32)
        expected.append(np.concatenate([evidence_vector(scores[labels == label],
                                                        scaled[labels == label])
                                        for label in COCO_LABEL_IDS]))
    np.testing.assert_allclose(evidence_batch(detections, sizes), np.stack(expected),
                               atol=1e-6)
    assert evidence_batch([], []).shape == (0, len(COCO_LABEL_IDS) * EVIDENCE_DIM)


def test_evidence_without_a_bicycle_is_zero() -> None:
    detections = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1]),
                  "scores": torch.tensor([0.99])}
    assert not rows(frcnn_evidence(detections, 100, 100))[coco_row(COCO_BICYCLE)].any()
    assert evidence_vector(np.zeros(0), np.zeros((0, 4))).tolist() == [0.0] * EVIDENCE_DIM


def test_detector_classes_name_their_open_images_labels() -> None:
    """Both detectors' classes as the feature vector orders them, with the Open Images
    labels a task may name them by; the tiles' classes that have one."""
    assert [c.name for c in LITE_CLASSES][:1] == ["Bicycle"] and len(LITE_CLASSES) == 23
    assert all(c.open_images_id.startswith("/m/") for c in LITE_CLASSES)
    assert len(COCO_CLASSES) == 80 and COCO_CLASSES[coco_row(COCO_BICYCLE)].name == "bicycle"
    by_id = {c.open_images_id: c.name for c in COCO_CLASSES}
    assert by_id["/m/01pns0"] == "fire hydrant" and by_id["/m/015qff"] == "traffic light"
    assert [c.name for c in COCO_CLASSES if not c.open_images_id] == ["cup"]
    bicycle = LITE_CLASSES[0]
    assert bicycle.answers_to("bicycle") and bicycle.answers_to("/m/0199G")
    assert not bicycle.answers_to("") and not bicycle.answers_to("Stationary bicycle")


def test_lite_classes_follow_the_packages_label_map() -> None:
    if not (fetch_models.OBJECTRON_DIR / fetch_models.PACKED_ASSETS).exists():
        pytest.skip("node_modules/@mediapipe/objectron is absent: run `npm ci`")
    labels = fetch_models.packed_asset(fetch_models.OBJECTRON_DIR,
                                       fetch_models.LABELMAP_ASSET).decode().splitlines()
    assert [c.name for c in LITE_CLASSES] == [line.strip() for line in labels[1:] if line]


def test_every_class_evidence_equals_each_class_suppressed_whole() -> None:
    """The fast rows (suppression only among confident boxes) are exactly what decoding
    and suppressing every candidate of each class gives: outputs with many overlapping
    confident boxes, saturated (tied) scores, classes never seen and boxes off the image."""
    rng = np.random.default_rng(7)
    counted = unseen = 0
    for case in range(40):
        raw_boxes = rng.normal(0, 3, (ssd.NUM_ANCHORS, 4)).astype(np.float32)
        logits = rng.normal(-6, 2, (ssd.NUM_ANCHORS, ssd.NUM_CLASSES)).astype(np.float32)
        for k in rng.choice(np.arange(1, ssd.NUM_CLASSES), int(rng.integers(0, 8))):
            hot = rng.choice(ssd.NUM_ANCHORS, int(rng.integers(1, 60)), replace=False)
            logits[hot, k] = rng.normal(1, 3, len(hot))
            if case % 3 == 0:
                logits[hot[:3], k] = 40.0  # sigmoid saturates at 1.0: a tie for the best
        logits[:, rng.integers(1, ssd.NUM_CLASSES)] = -30.0  # a class with no candidate
        expected = np.stack([evidence_vector(*class_detections(raw_boxes, logits, k))
                             for k in range(1, ssd.NUM_CLASSES)])
        assert np.array_equal(ssd.every_class_evidence(raw_boxes, logits), expected), case
        counted += int((expected[:, 9] > 1).sum())
        unseen += int((expected[:, 0] == 0).sum())
    assert counted > 20 and unseen >= 40, (counted, unseen)


def test_evidence_counts_confident_detections_and_clips_boxes() -> None:
    evidence = evidence_vector(np.array([0.4, 0.95, 0.6]),
                               np.array([[0, 0, 1, 1], [-0.1, 0.2, 0.5, 1.2], [0, 0, 1, 1]]))
    assert evidence[0] == pytest.approx(0.95)
    np.testing.assert_allclose(evidence[1:5], [0.0, 0.2, 0.5, 1.0])
    assert evidence[9] == 2


# --- lite on real images ------------------------------------------------------------


def test_converted_detector_matches_the_tflite_interpreter(lite: Extractor) -> None:
    """Raw outputs on dog.jpg against those of the TensorFlow Lite interpreter (ai-edge-
    litert) running the original .tflite on the same input, stored beside this test."""
    require_data(PHOTOS)
    from feature_service.extractors.lite import detector_input

    reference = np.load(HERE / "ssd_oidv4_dog_reference.npz")
    x = detector_input(rgb(PHOTOS / "dog.jpg"))[None]
    session = lite._detector  # type: ignore[attr-defined]
    boxes, logits = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(boxes[0], reference["box_encodings"], atol=1e-3)
    np.testing.assert_allclose(logits[0], reference["class_logits"], atol=1e-3)


def test_lite_finds_the_bicycle_behind_the_dog(lite: Extractor) -> None:
    require_data(PHOTOS)
    vector = vectors(lite, [PHOTOS / "dog.jpg"])[0]
    assert vector.shape == (LITE_DIM,) and vector.dtype == np.float32
    score, x1, y1, x2, y2, width, height, cx, cy, count = vector[1280:1290]
    assert score > 0.5
    assert count >= 1
    box = np.array([x1, y1, x2, y2]) * [768, 576, 768, 576]
    assert iou(box, DOG_BICYCLE) > 0.6, box
    assert (width, height) == pytest.approx((x2 - x1, y2 - y1))
    assert (cx, cy) == pytest.approx(((x1 + x2) / 2, (y1 + y2) / 2))


def test_lite_scores_street_tiles_without_bicycles_low(lite: Extractor) -> None:
    negatives = [p for cls in ("Hydrant", "Palm", "Car", "Crosswalk") for p in tiles(cls, 4)]
    scores = vectors(lite, negatives)[:, 1280]
    assert scores.max() < 0.3, dict(zip([p.name for p in negatives], scores, strict=True))


def test_lite_scores_photos_without_bicycles_low(lite: Extractor) -> None:
    require_data(PHOTOS)
    with (PHOTOS / "labels.csv").open() as f:
        negatives = [PHOTOS / r["filename"] for r in csv.DictReader(f) if r["label"] == "0"]
    assert len(negatives) >= 5
    scores = vectors(lite, negatives)[:, 1280]
    assert scores.max() < 0.3, dict(zip([p.name for p in negatives], scores, strict=True))


def test_lite_gives_every_class_its_own_evidence(lite: Extractor) -> None:
    """Each class's row is that class's detections, as `ssd_reference.class_detections`
    finds them; the Car row scores car tiles above bicycle tiles, and the dog photo's Dog
    row is high."""
    require_data(PHOTOS)
    from feature_service.extractors.lite import detector_batch, prepare_lite

    paths = tiles("Car", 8) + tiles("Bicycle", 8)
    found = rows(vectors(lite, paths)[:, 1280:])
    car = found[:, lite_row("Car"), 0]
    assert car[:8].mean() > car[8:].mean() + 0.2, car
    dog = rows(vectors(lite, [PHOTOS / "dog.jpg"])[0, 1280:])
    assert dog[lite_row("Dog"), 0] > 0.5
    session = lite._detector  # type: ignore[attr-defined]
    x = detector_batch(prepare_lite(rgb(PHOTOS / "dog.jpg")).detector[None])
    raw_boxes, logits = session.run(None, {session.get_inputs()[0].name: x})
    for name in ("Bicycle", "Dog", "Person", "Car"):
        k = lite_row(name)
        expected = evidence_vector(*class_detections(raw_boxes[0], logits[0], k + 1))
        np.testing.assert_allclose(dog[k], expected, atol=1e-5)


def test_lite_scores_bicycle_tiles_above_other_tiles(lite: Extractor) -> None:
    bicycles = vectors(lite, tiles("Bicycle", 12))[:, 1280]
    others = vectors(lite, tiles("Chimney", 6) + tiles("Mountain", 6))[:, 1280]
    assert bicycles.mean() > others.mean() + 0.3
    # Embeddings differ from image to image (not a constant or an all-zero vector).
    embeddings = vectors(lite, tiles("Bicycle", 2))[:, :1280]
    assert np.abs(embeddings[0] - embeddings[1]).max() > 0.1


def test_lite_batch_equals_one_by_one(lite: Extractor) -> None:
    paths = tiles("Bicycle", 3) + tiles("Palm", 3) + [PHOTOS / "dog.jpg"]
    batch = vectors(lite, paths)
    single = np.concatenate([vectors(lite, [p]) for p in paths])
    np.testing.assert_allclose(batch, single, atol=1e-4)
    assert lite.extract([]).shape == (0, LITE_DIM)


def test_lite_baseline_computes_the_same_vectors(lite: Extractor) -> None:
    """The benchmark's one-at-a-time PyTorch path and the ONNX Runtime path agree."""
    require_data(PHOTOS)
    from bench.baseline import load_baseline

    baseline = load_baseline("lite", MODELS)
    for path in (PHOTOS / "dog.jpg", tiles("Bicycle", 1)[0]):
        np.testing.assert_allclose(baseline(path), vectors(lite, [path])[0], atol=1e-3)


def test_lite_normalises_pixels_as_each_model_was_trained() -> None:
    from feature_service.extractors.lite import detector_batch, embedder_batch

    pixels = np.random.default_rng(3).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    planar = pixels.transpose(0, 3, 1, 2).astype(np.float64)
    assert embedder_batch(pixels).dtype == np.float32
    np.testing.assert_allclose(embedder_batch(pixels), (planar - 127) / 128, rtol=0, atol=1e-6)
    np.testing.assert_allclose(detector_batch(pixels), planar / 127.5 - 1, rtol=0, atol=1e-6)
    assert detector_batch(pixels).flags.c_contiguous


def test_lite_accepts_any_image_mode_and_tiny_images(lite: Extractor) -> None:
    grey = Image.new("L", (1, 1), 128)
    rgba = Image.new("RGBA", (500, 40), (10, 200, 30, 0))
    out = lite.extract([lite.prepare(grey), lite.prepare(rgba)])
    assert out.shape == (2, LITE_DIM) and np.isfinite(out).all()


# --- resnext50-frcnn with random weights --------------------------------------------


def test_untrained_resnext50_frcnn_vector_layout() -> None:
    # A small detector input keeps this quick on a CPU; shapes are the same at 800 px.
    extractor = untrained_resnext_frcnn(detector_min_size=96)
    assert extractor.info.dimension == 2058 and extractor.info.stored_dimension == FRCNN_DIM
    assert extractor.info.name == "resnext50-frcnn"
    images = [Image.new("RGB", (120, 90), (200, 30, 30)), Image.new("RGB", (64, 160), "white"),
              Image.new("RGB", (120, 90), (20, 90, 200))]
    prepared = [extractor.prepare(image) for image in images]
    assert prepared[0].backbone.shape == (3, 224, 224)
    assert max(prepared[1].detector.shape[1:]) <= 160  # never enlarged before the detector
    batch = extractor.extract(prepared)
    assert batch.shape == (3, FRCNN_DIM) and batch.dtype == np.float32
    assert np.isfinite(batch).all()
    assert np.abs(batch[0, :2048] - batch[1, :2048]).max() > 0  # embeddings are per image
    bicycle = coco_row(COCO_BICYCLE)
    evidence = rows(batch[:, 2048:])[:, bicycle]
    assert ((evidence[:, 0] >= 0) & (evidence[:, 0] <= 1)).all()
    assert ((evidence[:, 1:9] >= 0) & (evidence[:, 1:9] <= 1)).all()
    assert (evidence[:, 9] == np.round(evidence[:, 9])).all()
    single = np.concatenate([extractor.extract([p]) for p in prepared])
    np.testing.assert_allclose(single, batch, atol=1e-4)

    # Random weights detect nothing; biasing the class head makes every region a bicycle,
    # then a dog, to follow real detector output through the label filter.
    bias = extractor.detector.roi_heads.box_predictor.cls_score.bias  # type: ignore[union-attr]
    with torch.no_grad():
        bias[COCO_BICYCLE] = 20.0
    evidence = rows(extractor.extract(prepared)[:, 2048:])[:, bicycle]
    assert (evidence[:, 0] > 0.9).all() and (evidence[:, 9] >= 1).all()
    assert ((evidence[:, 1:9] >= 0) & (evidence[:, 1:9] <= 1)).all()
    assert (evidence[:, 5] > 0).all() and (evidence[:, 6] > 0).all()
    with torch.no_grad():
        bias[COCO_BICYCLE], bias[18] = 0.0, 20.0
    evidence = rows(extractor.extract(prepared)[:, 2048:])
    assert not evidence[:, bicycle].any() and (evidence[:, coco_row(18), 0] > 0.9).all()


# --- reduced precision --------------------------------------------------------------

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here"))]


def test_precisions_map_to_dtypes_and_float16_needs_cuda() -> None:
    assert reduced_dtype("cuda", "float16") is torch.float16
    assert reduced_dtype("cuda:1", "float32") is None
    assert reduced_dtype("cpu", "float32") is None
    assert reduced_dtype("cpu", "bfloat16") is torch.bfloat16  # measured, not assumed
    with pytest.raises(ValueError, match="float16 runs on CUDA only"):
        reduced_dtype("cpu", "float16")
    with pytest.raises(ValueError, match="precision"):
        reduced_dtype("cpu", "half")


@pytest.mark.parametrize("device", DEVICES)
def test_reduced_precision_keeps_the_embedding_and_decodes_boxes_in_float32(
        device: str) -> None:
    low_precision = "float16" if device == "cuda" else "bfloat16"
    reduced = untrained_resnext_frcnn(device, 96, Settings(low_precision, "channels_last", 2))
    full = untrained_resnext_frcnn(device, 96, Settings("float32", "channels_last", 2))
    # The precision is part of the version, hence of every cache key.
    assert full.info.version == "untrained"
    assert reduced.info.version == "untrained+" + ("fp16" if device == "cuda" else "bf16")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (120, 120, 3), dtype=np.uint8))
              for _ in range(3)]
    low = reduced.extract([reduced.prepare(image) for image in images])
    high = full.extract([full.prepare(image) for image in images])
    assert low.dtype == np.float32 and np.isfinite(low).all()
    assert not np.array_equal(low[:, :2048], high[:, :2048])  # it did run reduced
    cosine = (low[:, :2048] * high[:, :2048]).sum(1) / (
        np.linalg.norm(low[:, :2048], axis=1) * np.linalg.norm(high[:, :2048], axis=1))
    assert (cosine > 0.99).all(), cosine

    # Only the arithmetic-heavy parts are reduced: what the detector hands back (boxes
    # decoded from the regression, scores) is float32, as is the evidence built on it.
    bias = reduced.detector.roi_heads.box_predictor.cls_score.bias  # type: ignore[union-attr]
    with torch.no_grad():
        bias[COCO_BICYCLE] = 20.0
    with torch.inference_mode():
        pixels = reduced.prepare(images[0]).detector  # uint8, as prepared
        found = reduced.detector([pixels.to(device).float().div(255)])[0]
    assert found["boxes"].dtype == torch.float32 and found["scores"].dtype == torch.float32
    assert len(found["boxes"]) > 0
    evidence = rows(reduced.extract([reduced.prepare(images[0])])[0, 2048:])[
        coco_row(COCO_BICYCLE)]
    assert evidence[0] > 0.9 and ((evidence[1:9] >= 0) & (evidence[1:9] <= 1)).all()


@pytest.mark.slow
def test_compiled_trunks_give_the_eager_vectors() -> None:
    """FEATURE_COMPILE's path (torch.compile of both convolution trunks), on the CPU."""
    eager = untrained_resnext_frcnn("cpu", 96, Settings("float32", "channels_last", 2))
    compiled = untrained_resnext_frcnn("cpu", 96, Settings("float32", "channels_last", 2,
                                                           compiled=True))
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (90 + 10 * k, 120, 3), dtype=np.uint8))
              for k in range(3)]
    # Two batch sizes, one compilation for both (a batch of 1 would be compiled apart:
    # torch specialises sizes 0 and 1).
    for batch in (images[:2], images):
        prepared = [eager.prepare(image) for image in batch]
        np.testing.assert_allclose(compiled.extract(prepared), eager.extract(prepared),
                                   atol=1e-3, rtol=1e-3)


# --- registry and weights -----------------------------------------------------------


def test_registry_names() -> None:
    assert set(EXTRACTORS) == {"resnext50-frcnn", "lite"}
    with pytest.raises(ValueError, match="unknown extractor 'random'"):
        load_extractor("random", MODELS)


def test_lite_without_models_names_the_file_and_command(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as raised:
        load_extractor("lite", tmp_path)
    message = str(raised.value)
    assert str(tmp_path / "lite" / "efficientnet_lite2.onnx") in message
    assert "make models" in message


def test_resnext50_frcnn_without_weights_names_the_file_and_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as raised:
        load_extractor("resnext50-frcnn", tmp_path, device="cpu")
    message = str(raised.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnext50_32x4d-7cdf4587.pth") in message
    assert "make weights" in message


def test_stale_lite_conversion_is_refused(tmp_path: Path) -> None:
    lite_dir = tmp_path / "lite"
    lite_dir.mkdir()
    for name in ("efficientnet_lite2.onnx", "ssd_mobilenetv2_oidv4.onnx"):
        (lite_dir / name).write_bytes(b"")
    (lite_dir / "manifest.json").write_text('{"conversion": "0"}')
    with pytest.raises(MissingWeightsError, match="make models"):
        load_extractor("lite", tmp_path)


# --- fetch_models -------------------------------------------------------------------


def fake_objectron(tmp_path: Path, tflite: bytes) -> Path:
    """A package folder laid out like @mediapipe/objectron, holding `tflite` as the SSD."""
    folder = tmp_path / "objectron"
    folder.mkdir()
    labels = b"???\nBicycle\nBoot\n"
    (folder / fetch_models.PACKED_ASSETS).write_bytes(labels + tflite)
    files = [{"filename": fetch_models.LABELMAP_ASSET, "start": 0, "end": len(labels)},
             {"filename": fetch_models.SSD_ASSET, "start": len(labels),
              "end": len(labels) + len(tflite)}]
    (folder / fetch_models.PACKED_LOADER).write_text(
        f"loadPackage({json.dumps({'files': files})});")
    return folder


def test_fetch_lite_refuses_a_detector_with_the_wrong_checksum(tmp_path: Path) -> None:
    objectron = fake_objectron(tmp_path, b"TFL3 not the pinned model")
    with pytest.raises(fetch_models.FetchError, match="sha256"):
        fetch_models.fetch_lite(tmp_path / "models", objectron)
    assert not (tmp_path / "models" / "lite" / "manifest.json").exists()


def test_fetch_lite_without_the_npm_package_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(fetch_models.FetchError, match="npm ci"):
        fetch_models.fetch_lite(tmp_path / "models", tmp_path / "nowhere")


def test_fetch_lite_converts_once(tmp_path: Path) -> None:
    if not (fetch_models.OBJECTRON_DIR / fetch_models.PACKED_ASSETS).exists():
        pytest.skip("node_modules/@mediapipe/objectron is absent: run `npm ci`")
    messages: list[str] = []
    lite_dir = fetch_models.fetch_lite(tmp_path, log=messages.append)
    assert fetch_models.lite_ready(lite_dir)
    stamp = (lite_dir / "ssd_mobilenetv2_oidv4.onnx").stat().st_mtime_ns
    # A no-op: the package is not even read again (it is "gone" now), nothing rewritten.
    fetch_models.fetch_lite(tmp_path, tmp_path / "gone", log=messages.append)
    assert (lite_dir / "ssd_mobilenetv2_oidv4.onnx").stat().st_mtime_ns == stamp
    assert "already" in messages[-1]
    load_extractor("lite", tmp_path)


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server for the weight downloads: (base URL, folder it serves)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_Files, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_download_checks_the_hash_in_the_file_name(file_server: tuple[str, Path],
                                                   tmp_path: Path) -> None:
    import hashlib

    base, root = file_server
    data = b"weights" * 1000
    good = f"model-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (root / good).write_bytes(data)
    (root / "model-00000000.pth").write_bytes(data)
    fetch_models.download_checked(f"{base}/{good}", tmp_path / "cache" / good)
    assert (tmp_path / "cache" / good).read_bytes() == data
    with pytest.raises(fetch_models.FetchError, match=r"model-00000000\.pth"):
        fetch_models.download_checked(f"{base}/model-00000000.pth",
                                      tmp_path / "cache" / "model-00000000.pth")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [good]


def test_fetch_resnext50_frcnn_reports_a_failed_download(
        file_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = file_server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(fetch_models.FetchError) as raised:
        fetch_models.fetch_resnext50_frcnn(mirror=base, log=lambda _: None)
    assert f"{base}/resnext50_32x4d-7cdf4587.pth" in str(raised.value)
    assert "404" in str(raised.value)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


def test_device_choice() -> None:
    from feature_service.extractors.runtime import cpu_threads, resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert cpu_threads() == len(os.sched_getaffinity(0))  # this process's cores, not the host's
