"""What reduced precision costs trained models' features:
`python -m bench.precision [--short]` (bfloat16 on the CPU; and the lite extractor's int8
models, bench/int8.py, which are accepted only where this shows them harmless).

The resnext50-frcnn extractor runs its convolution trunks and box-head MLP under
`torch.autocast` (bfloat16 on a CPU), keeping box decoding, NMS and scores in float32.
Its pretrained weights cannot be fetched offline, so the effect is measured here on the
trained models we do have, the same way: the `lite` extractor's EfficientNet-Lite2
embedder and Open Images SSD-MobileNetV2 detector in PyTorch eager mode (not ONNX
Runtime), each street tile once in float32 and once under autocast, the outputs cast to
float32 before decoding. Reported: embedding cosine similarity, the change in bicycle
score evidence and in how many images pass the count threshold, the cross-validated F1
of the logistic-regression probe of bench/features.py on each set of vectors, and
seconds per image (informative only: the machine is shared).

Where the resnext50-frcnn weights are present, its own float32 and reduced-precision
vectors are compared the same way on RESNEXT_COUNT tiles (full form only: float32 takes
about 2 s per image on a 2-core CPU): the direct check, which the lite figures stand in
for where the weights cannot be fetched.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.baseline import MODELS
from bench.features import TILES, tile_set
from bench.vector_diff import compare

COUNTS = {True: 128, False: 512}
RESNEXT_COUNT = 64
BATCH = 16
MODES = ("float32", "bfloat16")


def load_models() -> tuple[Callable, Callable]:
    """The lite extractor's two trained models in PyTorch eager, as the baseline loads them."""
    import onnx
    from onnx2torch import convert

    from feature_service.extractors.lite import efficientnet_lite2, lite_files
    from feature_service.fetch_models import efficientnet_weights_path

    _, detector_onnx = lite_files(MODELS / "lite")
    embedder = efficientnet_lite2(efficientnet_weights_path())
    detector = convert(onnx.load(str(detector_onnx))).eval()
    return embedder, detector


def batch_inputs(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    from bench.baseline import full_size_rgb
    from feature_service.extractors.lite import detector_input, embedder_input

    images = [full_size_rgb(p) for p in paths]
    return (np.stack([embedder_input(i) for i in images]),
            np.stack([detector_input(i) for i in images]))


def infer(embedder: Callable, detector: Callable, inputs: tuple[np.ndarray, np.ndarray],
          bfloat16: bool) -> tuple[np.ndarray, dict[str, float]]:
    """One batch to (N, 1290) float32 vectors, and the seconds each model took.

    Outputs are cast to float32 before decoding, as the product decodes in float32.
    """
    import torch

    from feature_service.extractors.lite import lite_vectors

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                enabled=bfloat16):
        started = time.perf_counter()
        embedding = embedder(torch.from_numpy(inputs[0])).float()
        middle = time.perf_counter()
        raw_boxes, logits = detector(torch.from_numpy(inputs[1]))
        raw_boxes, logits = raw_boxes.float(), logits.float()
        ended = time.perf_counter()
    vectors = lite_vectors(embedding.numpy(), raw_boxes.numpy(), logits.numpy())
    return vectors, {"embedder": middle - started, "detector": ended - middle}


def measure(paths: list[Path]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """Every image through both models in both modes, batch by batch, the two modes
    alternating so that a change in the machine's load hits both alike."""
    embedder, detector = load_models()
    batches = [paths[i:i + BATCH] for i in range(0, len(paths), BATCH)]
    warm_up = batch_inputs(paths[:2])
    for mode in MODES:  # first calls pay one-off set-up costs: not the steady state
        infer(embedder, detector, warm_up, mode == "bfloat16")
    vectors: dict[str, list[np.ndarray]] = {mode: [] for mode in MODES}
    seconds = {mode: {"embedder": 0.0, "detector": 0.0} for mode in MODES}
    for batch in batches:
        inputs = batch_inputs(batch)
        for mode in MODES:
            out, took = infer(embedder, detector, inputs, mode == "bfloat16")
            vectors[mode].append(out)
            for model, spent in took.items():
                seconds[mode][model] += spent
    return {mode: np.concatenate(v) for mode, v in vectors.items()}, seconds


def resnext_effect(paths: list[Path], labels: list[int],
                   build: Callable | None = None) -> dict:
    """resnext50-frcnn's float32 vectors against its reduced-precision ones (bfloat16 on
    a CPU, float16 on CUDA). `build(device, settings)` makes the extractor: the
    pretrained one unless a test passes another."""
    from bench.baseline import full_size_rgb
    from bench.features import weights_missing
    from feature_service.extractors.base import Settings
    from feature_service.extractors.resnext_frcnn import (
        DTYPE_NAMES,
        EMBEDDING_DIM,
        ResNeXtFrcnnExtractor,
    )
    from feature_service.extractors.runtime import cpu_threads, resolve_device

    if build is None:
        why = weights_missing("resnext50-frcnn")
        if why:
            return {"status": "skipped", "reason": f"{why}: the lite figures stand in"}
        build = ResNeXtFrcnnExtractor.pretrained
    device = resolve_device("auto")
    low = "float16" if device.startswith("cuda") else "bfloat16"
    reduced = build(device, Settings(low, "channels_last", cpu_threads()))
    full = build(device, Settings("float32", "channels_last", cpu_threads()))

    def vectors(extractor: ResNeXtFrcnnExtractor) -> np.ndarray:
        return np.concatenate([extractor.extract([extractor.prepare(full_size_rgb(p))])
                               for p in paths])

    name = {"bf16": "bfloat16", "fp16": "float16"}[DTYPE_NAMES[reduced.dtype]]
    return {"device": device, "images": len(paths), "bicycles": sum(labels),
            **compare(vectors(full), vectors(reduced), np.array(labels), EMBEDDING_DIM, name)}


def run(short: bool, count: int | None = None, resnext_count: int | None = None) -> dict:
    import torch

    from feature_service.extractors import MissingWeightsError
    from feature_service.fetch_models import FetchError

    if not (TILES / "labels.csv").exists():
        return {"status": "skipped", "reason": f"street tiles not found at {TILES}"}
    paths, labels = tile_set(count or COUNTS[short])
    if min(sum(labels), len(labels) - sum(labels)) < 5:
        raise ValueError(f"{len(labels)} tiles hold too few of one class for 5-fold "
                         "cross-validation: use at least 20")
    try:
        vectors, seconds = measure(paths)
    except (MissingWeightsError, FetchError) as exc:
        return {"status": "skipped", "reason": str(exc)}
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    per_image = {mode: {model: round(spent / len(paths), 5) for model, spent in s.items()}
                 for mode, s in seconds.items()}
    for figures in per_image.values():
        figures["both"] = round(figures["embedder"] + figures["detector"], 5)
    result = {
        "image_set": "streetview tiles, 120x120 JPEG",
        "models": "lite: EfficientNet-Lite2 + SSD-MobileNetV2 (Open Images), PyTorch eager",
        "images": len(paths), "bicycles": sum(labels), "batch": BATCH,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "bf16_native": native,
        **compare(vectors["float32"], vectors["bfloat16"], np.array(labels)),
        "seconds_per_image": per_image,
        "bfloat16_speedup": round(per_image["float32"]["both"]
                                  / per_image["bfloat16"]["both"], 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    from bench.int8 import int8_effect

    result["lite_int8"] = int8_effect(paths, labels, MODELS)
    resnext_count = RESNEXT_COUNT if resnext_count is None and not short else resnext_count
    if resnext_count:
        result["resnext50_frcnn"] = resnext_effect(*tile_set(resnext_count))
    else:
        result["resnext50_frcnn"] = {"status": "skipped", "reason": "full form only"}
    if not native:
        result["bf16_note"] = ("this CPU has no native bfloat16 (oneDNN reports none): "
                               "bfloat16 was emulated, so its speed says nothing of the product")
    return result


def markdown(result: dict) -> str:
    if result.get("status") == "skipped":
        return f"precision: skipped: {result['reason']}"
    cosine, score = result["embedding_cosine"], result["bicycle_score_abs_diff"]
    over, f1 = result["images_over_threshold"], result["probe_f1"]
    times = result["seconds_per_image"]
    rows = [
        ("embedding cosine fp32 vs bf16 (min / mean)", f"{cosine['min']} / {cosine['mean']}"),
        ("bicycle score abs diff (max / mean)", f"{score['max']} / {score['mean']}"),
        ("images over the 0.5 threshold (fp32 / bf16)", f"{over['float32']} / {over['bfloat16']}"),
        ("images crossing the threshold differently",
         str(result["images_crossing_threshold_differently"])),
        ("images whose detection count differs", str(result["images_with_a_different_count"])),
        ("probe F1 (fp32 / bf16)", f"{f1['float32']} / {f1['bfloat16']}"),
        ("probe predictions that differ", str(result["probe_predictions_that_differ"])),
        ("s/image, both models (fp32 / bf16)",
         f"{times['float32']['both']} / {times['bfloat16']['both']} "
         f"({result['bfloat16_speedup']}x)"),
        ("native bf16", str(result["bf16_native"])),
    ]
    from bench.int8 import markdown_rows

    rows += markdown_rows(result.get("lite_int8", {"status": "skipped", "reason": "absent"}))
    resnext = result.get("resnext50_frcnn", {})
    if resnext.get("status") == "skipped":
        rows.append(("resnext50-frcnn itself", f"skipped: {resnext['reason']}"))
    elif resnext:
        reduced = next(k for k in resnext["probe_f1"] if k != "float32")
        rows += [(f"resnext50-frcnn ({resnext['images']} tiles, {resnext['device']}, "
                  f"{reduced}): embedding cosine min / mean",
                  f"{resnext['embedding_cosine']['min']} / {resnext['embedding_cosine']['mean']}"),
                 ("resnext50-frcnn: images crossing the threshold differently",
                  str(resnext["images_crossing_threshold_differently"])),
                 ("resnext50-frcnn: probe F1 (fp32 / reduced)",
                  f"{resnext['probe_f1']['float32']} / {resnext['probe_f1'][reduced]}")]
    lines = [f"{result['images']} tiles ({result['bicycles']} bicycles), {result['models']}, "
             f"{result['threads']} threads, load {result['load_average_1m']}", "",
             "| figure | value |", "|---|---|"]
    return "\n".join(lines + [f"| {name} | {value} |" for name, value in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precision",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true",
                        help=f"{COUNTS[True]} tiles instead of {COUNTS[False]}")
    args = parser.parse_args(argv)
    result = run(args.short)
    print(json.dumps(result, indent=2))
    print()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
