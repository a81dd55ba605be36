"""What the `lite` extractor's int8 models cost its features, as the product computes
them: the ONNX Runtime extractor in float32 and in int8 on the same tiles, batch by
batch, the two alternating. Part of `python -m bench.precision`.

int8 is accepted (and `FEATURE_PRECISION=auto` may choose it) only where the probe's F1
moves by at most F1_TOLERANCE and the bicycle decision (score over 0.5) of at most
FLIP_SHARE of the tiles changes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

F1_TOLERANCE = 0.005
FLIP_SHARE = 0.01
BATCH = 16


def int8_effect(paths: list[Path], labels: list[int], models: Path) -> dict:
    from bench.vector_diff import compare
    from feature_service.extractors.base import Settings
    from feature_service.extractors.lite import LiteExtractor
    from feature_service.extractors.lite_models import quantized_files
    from feature_service.extractors.runtime import cpu_threads

    lite_dir = models / "lite"
    if quantized_files(lite_dir) is None:
        return {"status": "skipped",
                "reason": f"no int8 lite models in {lite_dir}: run `make models`"}
    extractors = {precision: LiteExtractor(lite_dir, Settings(precision, threads=cpu_threads()))
                  for precision in ("float32", "int8")}
    vectors: dict[str, list[np.ndarray]] = {p: [] for p in extractors}
    seconds = dict.fromkeys(extractors, 0.0)
    for extractor in extractors.values():
        extractor.warm_up()
    for start in range(0, len(paths), BATCH):
        prepared = [extractors["float32"].prepare(_rgb(p)) for p in paths[start:start + BATCH]]
        for precision, extractor in extractors.items():
            began = time.perf_counter()
            vectors[precision].append(extractor.extract(prepared))
            seconds[precision] += time.perf_counter() - began
    full, reduced = (np.concatenate(vectors[p]) for p in ("float32", "int8"))
    figures = compare(full, reduced, np.array(labels), 1280, "int8")
    f1 = figures["probe_f1"]
    flips = figures["images_crossing_threshold_differently"]
    figures.update({
        "images": len(paths), "version": extractors["int8"].info.version,
        "int8_speedup": round(seconds["float32"] / seconds["int8"], 2),
        "f1_change": round(f1["int8"] - f1["float32"], 4),
        "decision_flip_share": round(flips / len(paths), 4),
        "accepted": abs(f1["int8"] - f1["float32"]) <= F1_TOLERANCE
        and flips <= FLIP_SHARE * len(paths)})
    return figures


def _rgb(path: Path):  # type: ignore[no-untyped-def]
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def markdown_rows(result: dict) -> list[tuple[str, str]]:
    if result.get("status") == "skipped":
        return [("lite int8", f"skipped: {result['reason']}")]
    f1 = result["probe_f1"]
    return [
        ("lite int8 (ONNX Runtime): embedding cosine min / mean",
         f"{result['embedding_cosine']['min']} / {result['embedding_cosine']['mean']}"),
        ("lite int8: probe F1 (fp32 / int8)", f"{f1['float32']} / {f1['int8']}"),
        ("lite int8: bicycle decisions that change",
         f"{result['images_crossing_threshold_differently']} of {result['images']}"),
        ("lite int8: speed of the models, int8 vs fp32", f"{result['int8_speedup']}x"),
        ("lite int8: accepted (F1 within 0.005, at most 1% of decisions)",
         str(result["accepted"]))]
