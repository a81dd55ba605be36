"""The CPU feature image serves `lite` without torch (requirements/feature-lite.txt has
none): a real feature service, in a Python where importing torch or torchvision fails,
starts, answers Embed with features, and never tried to import either."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hitl.channels import open_channel
from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.support import TILES, free_port, lite_feature_env, require_data, require_lite_models
from tests.support import running as service_running
from tools.locks import CONVERSION_ONLY, CUDA_STACK, derived, pins

# Loaded by Python at start-up (site imports sitecustomize from the path): every import
# of torch or torchvision fails, and each attempt is written down.
NO_TORCH = '''
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            with open({attempts!r}, "a") as log:
                log.write(name + "\\n")
            raise ImportError(name + " is not in the lite image")
        return None

sys.meta_path.insert(0, NoTorch())
'''


def test_the_lite_lock_has_no_torch_and_no_conversion_packages() -> None:
    lite = next(text for path, text in derived().items() if path.name == "feature-lite.txt")
    pinned = pins(lite)
    assert {"onnxruntime", "numpy", "pillow", "lmdb", "grpcio", "aiohttp"} <= set(pinned)
    for name in pinned:
        assert not CUDA_STACK.match(f"{name}==") and not CONVERSION_ONLY.match(f"{name}==")
    # What only torch or the conversion wanted goes too.
    assert not {"sympy", "networkx", "jinja2", "ml-dtypes", "tflite"} & set(pinned)


async def test_a_lite_feature_service_runs_where_torch_cannot_be_imported(
        tmp_path: Path) -> None:
    require_data(TILES)
    require_lite_models()
    site, attempts = tmp_path / "site", tmp_path / "torch-imports.txt"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_TORCH.format(attempts=str(attempts)))
    port = free_port()
    env = lite_feature_env(port, tmp_path / "cache", PYTHONPATH=str(site))
    tile = sorted((TILES / "images").glob("*.jpg"))[0]
    with service_running("feature_service", env, tmp_path / "feature.log", port):
        async with open_channel(f"127.0.0.1:{port}", "hitl.v1.FeatureService") as channel:
            reply = await asyncio.wait_for(feature_pb2_grpc.FeatureServiceStub(channel).Embed(
                feature_pb2.EmbedRequest(images=[feature_pb2.ImageRef(
                    id=tile.name, data=tile.read_bytes())])), 60)
    (result,) = reply.results
    assert result.WhichOneof("outcome") == "features", result
    assert len(result.features.vector) > 0
    assert not attempts.exists(), f"tried to import {attempts.read_text().split()}"
