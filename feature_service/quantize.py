"""The `lite` extractor's int8 models, made once by `make models` after the conversion.

Static quantization with ONNX Runtime: weights int8 per channel, activations uint8 with
ranges calibrated on street tiles of the demo's dataset (the last ones in labels.csv, a
quarter of them bicycles, so never the tiles the benchmarks evaluate on), the 99.999th
percentile of each activation rather than its extreme (one outlier would otherwise
coarsen a whole layer), and weights in 7 bits (reduce_range) so that CPUs without VNNI
cannot overflow their 16-bit intermediate sums.

Only the embedder is quantized. `python -m bench.precision` accepted it (the probe's F1
unchanged on 1,024 tiles); the detector's int8 form moved the bicycle decision of 1.0 to
1.8 % of the tiles across the recipes tried, over the 1 % allowed, so it stays float32.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .extractors.lite_models import (
    EFFICIENTNET_ONNX,
    INT8_MANIFEST,
    ONNX_SHA256,
    QUANTIZATION,
    QUANTIZED,
    lite_manifest,
    quantized_files,
    sha256,
)

QUANTIZE = (EFFICIENTNET_ONNX,)
CALIBRATION_BICYCLES, CALIBRATION_OTHERS = 12, 36


def calibration_tiles(tiles_dir: Path) -> list[Path]:
    """The last CALIBRATION_BICYCLES bicycle tiles and CALIBRATION_OTHERS others of
    labels.csv (filename,label,...), in file order."""
    with (tiles_dir / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    bicycles = [r for r in rows if r["label"] == "1"][-CALIBRATION_BICYCLES:]
    others = [r for r in rows if r["label"] == "0"][-CALIBRATION_OTHERS:]
    return [tiles_dir / r["filename"] for r in bicycles + others]


def _embedder_inputs(paths: list[Path]) -> Iterator[dict[str, object]]:
    from PIL import Image

    from .extractors.lite import embedder_input

    for path in paths:
        with Image.open(path) as image:
            yield {"image": embedder_input(image.convert("RGB"))[None]}


def quantize_lite(lite_dir: Path, tiles_dir: Path,
                  log: Callable[[str], None] = print) -> bool:
    """Makes the int8 models in `lite_dir` (a no-op when they are there); False, saying
    why, when there are no tiles to calibrate with."""
    if quantized_files(lite_dir) is not None:
        log(f"int8 lite models already in {lite_dir}")
        return True
    if not (tiles_dir / "labels.csv").is_file():
        log(f"no street tiles at {tiles_dir} to calibrate int8 models with: lite runs in "
            "float32 only (set --calibration-tiles)")
        return False
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    paths = calibration_tiles(tiles_dir)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.inputs = _embedder_inputs(paths)

        def get_next(self) -> dict[str, object] | None:
            return next(self.inputs, None)

    (lite_dir / INT8_MANIFEST).unlink(missing_ok=True)
    digests = {}
    for source in QUANTIZE:
        target = lite_dir / QUANTIZED[source]
        partial = lite_dir / (target.name + ".partial")
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(lite_dir / source), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(partial), Reader(),
                            quant_format=QuantFormat.QOperator, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            reduce_range=True, calibrate_method=CalibrationMethod.Percentile)
            os.replace(partial, target)
        digests[target.name] = sha256(target.read_bytes())
        log(f"wrote {target}")
    manifest = {"quantization": QUANTIZATION, "conversion": lite_manifest(),
                "calibration_tiles": [p.name for p in paths], ONNX_SHA256: digests}
    partial_manifest = lite_dir / (INT8_MANIFEST + ".partial")
    partial_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial_manifest, lite_dir / INT8_MANIFEST)
    return True
