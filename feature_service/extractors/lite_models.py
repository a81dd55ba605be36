"""The `lite` extractor's converted model files: their names, the checksums of their
sources, and whether a finished conversion is in a folder. Shared by the extractor, which
refuses files that are missing or damaged, and by `fetch_models`, which makes them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

EFFICIENTNET_ONNX = "efficientnet_lite2.onnx"
SSD_ONNX = "ssd_mobilenetv2_oidv4.onnx"
# Checksums of the sources the conversion starts from.
SSD_SHA256 = "d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6"
EFFICIENTNET_SHA256 = "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"

# Written last into <models>/lite/, so its presence means the conversion finished.
MANIFEST = "manifest.json"
ONNX_SHA256 = "onnx_sha256"
# Bumped whenever the conversion changes its output: it is part of the extractor version.
CONVERSION = "1"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lite_manifest() -> dict[str, str]:
    """What a finished `lite` conversion records; a different one means convert again."""
    return {"conversion": CONVERSION, "ssd_sha256": SSD_SHA256,
            "efficientnet_sha256": EFFICIENTNET_SHA256}


def lite_version() -> str:
    return f"c{CONVERSION}-ssd{SSD_SHA256[:8]}-effnet{EFFICIENTNET_SHA256[:8]}"


def lite_ready(lite_dir: Path) -> bool:
    try:
        recorded = json.loads((lite_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    recorded.pop(ONNX_SHA256, None)
    return (recorded == lite_manifest() and (lite_dir / EFFICIENTNET_ONNX).is_file()
            and (lite_dir / SSD_ONNX).is_file() and not corrupt_files(lite_dir))


def corrupt_files(lite_dir: Path) -> list[Path]:
    """Converted files whose bytes differ from the checksums recorded at conversion: a
    damaged file would otherwise load and silently compute wrong features."""
    try:
        recorded = json.loads((lite_dir / MANIFEST).read_text()).get(ONNX_SHA256, {})
    except (OSError, ValueError, AttributeError):
        return []
    return [lite_dir / name for name, digest in recorded.items()
            if (lite_dir / name).is_file() and sha256((lite_dir / name).read_bytes()) != digest]


# int8 models, made by `make models` after the conversion (fetch_models.quantize_lite)
# where the street tiles are there to calibrate with; int8.json records which models were
# quantized, how, and the checksums of the results. A model left out of it (its int8 form
# changed decisions too much, see `python -m bench.precision`) runs in float32.
INT8_MANIFEST = "int8.json"
QUANTIZED = {EFFICIENTNET_ONNX: "efficientnet_lite2.int8.onnx",
             SSD_ONNX: "ssd_mobilenetv2_oidv4.int8.onnx"}
# Bumped whenever the quantization recipe changes.
QUANTIZATION = "1"


def quantized_files(lite_dir: Path) -> tuple[Path, Path, str] | None:
    """(embedder, detector, version) of the int8 form, or None when there is none (or it
    is from another conversion, or damaged)."""
    try:
        recorded = json.loads((lite_dir / INT8_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if (not isinstance(recorded, dict) or recorded.get("quantization") != QUANTIZATION
            or recorded.get("conversion") != lite_manifest() or not lite_ready(lite_dir)):
        return None
    digests: dict[str, str] = recorded.get(ONNX_SHA256, {})
    if not digests:
        return None
    for name, digest in digests.items():
        path = lite_dir / name
        if not path.is_file() or sha256(path.read_bytes()) != digest:
            return None
    chosen = [name for source, name in QUANTIZED.items() if name in digests]
    paths = [lite_dir / (QUANTIZED[source] if QUANTIZED[source] in digests else source)
             for source in (EFFICIENTNET_ONNX, SSD_ONNX)]
    tag = sha256("".join(digests[name] for name in sorted(chosen)).encode())[:8]
    return paths[0], paths[1], f"{lite_version()}+int8-{tag}"
