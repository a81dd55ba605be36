"""How far vectors computed another way (reduced precision, int8 models) are from the
float32 ones: the embedding's cosine, the detector score, the count, and a linear probe's
F1 on the same tiles. Shared by `bench.precision` and `bench.int8`."""

from __future__ import annotations

import numpy as np

SCORE = 1280  # the bicycle score in lite's 1280 + 10 vector (base.EVIDENCE_FIELDS[0])


def compare(full: np.ndarray, reduced: np.ndarray, labels: np.ndarray,
            embedding_dim: int = SCORE, reduced_name: str = "bfloat16") -> dict:
    """Figures of how far the reduced-precision vectors are from the float32 ones; the
    evidence (bicycle score first) follows the embedding_dim embedding values."""
    from feature_service.extractors.base import COUNT_THRESHOLD, EVIDENCE_FIELDS

    score = embedding_dim
    a, b = full[:, :score].astype(np.float64), reduced[:, :score].astype(np.float64)
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                         1e-12)
    score_diff = np.abs(full[:, score] - reduced[:, score])
    count = score + EVIDENCE_FIELDS.index("count")  # detections over COUNT_THRESHOLD
    f1_full, predicted_full = probe_f1(full, labels)
    f1_reduced, predicted_reduced = probe_f1(reduced, labels)
    return {
        "embedding_cosine": {"min": round(float(cosine.min()), 6),
                             "mean": round(float(cosine.mean()), 6)},
        "embedding_max_abs_diff": float(np.abs(a - b).max()),
        "bicycle_score_abs_diff": {"max": round(float(score_diff.max()), 5),
                                   "mean": round(float(score_diff.mean()), 6)},
        "images_crossing_threshold_differently": int(np.sum(
            (full[:, score] > COUNT_THRESHOLD) != (reduced[:, score] > COUNT_THRESHOLD))),
        "images_with_a_different_count": int(np.sum(full[:, count] != reduced[:, count])),
        "images_over_threshold": {
            "float32": int(np.sum(full[:, score] > COUNT_THRESHOLD)),
            reduced_name: int(np.sum(reduced[:, score] > COUNT_THRESHOLD))},
        "probe_f1": {"float32": f1_full, reduced_name: f1_reduced},
        "probe_predictions_that_differ": int(np.sum(predicted_full != predicted_reduced)),
        "vectors_identical": bool(np.array_equal(full, reduced)),
    }


def probe_f1(vectors: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Cross-validated F1 of a standardised logistic regression on `vectors` (the kind
    of linear model the trainer fits), and its out-of-fold predictions."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    predicted = cross_val_predict(model, vectors, labels, cv=folds)
    return round(float(f1_score(labels, predicted)), 4), predicted


def float16_effect(vectors: np.ndarray, labels: list[int]) -> dict:
    y = np.array(labels)
    scores = {f"f1_{dtype}": probe_f1(vectors.astype(dtype).astype(np.float32), y)[0]
              for dtype in ("float32", "float16")}
    rounding = np.abs(vectors - vectors.astype(np.float16).astype(np.float32))
    return {**scores, "max_abs_rounding": float(rounding.max()), "images": len(y)}
