"""Measures the figures docs/scaling.md is built on, on this machine's CPU, and prints
them as JSON. Run from the repository root:

    python -m bench.capacity [--quick] > artifacts/capacity.json

- model cost: FLOPs per image (torch's FLOP counter) and CPU images/s of the
  resnext50-frcnn architectures, built with random weights (same cost as the
  pretrained ones);
- decode cost: JPEG decode + resize per image on one core, on the real photos;
- trainer: memory per catalog item, and the time of the real ranking code
  (trainer_service.selection.ranking.rank) at growing numbers of embedded items, and
  of the near-duplicate screen and lease guard at 5,000 candidates and 3,000 labels;
- LMDB: bytes on disk per cached feature vector, with the real FeatureCache.

Extrapolations to 1M and 100M items are done in docs/scaling.md, from these figures.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

PHOTOS = Path(os.environ.get("HITL_TEST_DATA", ROOT.parent / "shared" / "data")) / "photos"
RESNEXT_DIM = 2048
EVIDENCE_DIM = 10
FEATURE_DIM = RESNEXT_DIM + EVIDENCE_DIM


def timed(fn: Any, repeat: int) -> float:
    """Best of `repeat` wall-clock runs, in seconds (the machine is shared)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def model_cost(quick: bool) -> dict[str, Any]:
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    out: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    backbone = torchvision.models.resnext50_32x4d(weights=None).eval()
    detector = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None).eval()
    batch = 4 if quick else 8
    crops = torch.rand(batch, 3, 224, 224)
    # A typical Open Images photo; the detector's own transform resizes it to 800 px.
    photo = [torch.rand(3, 768, 1024)]
    with torch.inference_mode():
        backbone(crops[:1])
        with FlopCounterMode(display=False) as counter:
            backbone(crops[:1])
        out["resnext50_gflops_per_image"] = counter.get_total_flops() / 1e9
        seconds = timed(lambda: backbone(crops), 2 if quick else 3)
        out["resnext50_cpu_images_per_s"] = batch / seconds
        detector(photo)
        with FlopCounterMode(display=False) as counter:
            detector(photo)
        out["frcnn_gflops_per_image"] = counter.get_total_flops() / 1e9
        seconds = timed(lambda: detector(photo), 1 if quick else 2)
        out["frcnn_cpu_images_per_s"] = 1 / seconds
    out["input"] = {"resnext50": "224x224", "frcnn": "1024x768 resized to 800x1067"}
    return out


def lite_cost() -> dict[str, Any]:
    """The lite extractor (ONNX Runtime on CPU), as the local overlay runs it."""
    from PIL import Image

    from feature_service.extractors.lite import LiteExtractor

    lite_dir = ROOT / ".models" / "lite"
    photos = sorted(PHOTOS.glob("*.jpg"))
    if not lite_dir.exists() or not photos:
        return {"skipped": "needs `make models` and the shared photos"}
    extractor = LiteExtractor(lite_dir)
    prepared: list[object] = [extractor.prepare(Image.open(p).convert("RGB")) for p in photos]
    extractor.extract(prepared)
    seconds = timed(lambda: extractor.extract(prepared), 3)
    return {"images_per_s": len(prepared) / seconds, "dimension": extractor.info.dimension}


def decode_cost() -> dict[str, Any]:
    from PIL import Image

    photos = sorted(PHOTOS.glob("*.jpg"))
    if not photos:
        return {"skipped": f"no photos under {PHOTOS}"}
    blobs = [p.read_bytes() for p in photos]

    def decode_all() -> None:
        for blob in blobs:
            with Image.open(io.BytesIO(blob)) as encoded:
                rgb = encoded.convert("RGB")
                rgb.resize((1067, 800))
                rgb.resize((224, 224))

    seconds = timed(decode_all, 3)
    sizes = [Image.open(p).size for p in photos]
    return {"photos": len(photos), "mean_pixels": float(np.mean([w * h for w, h in sizes])),
            "images_per_s_one_core": len(photos) / seconds}


def trainer_cost(quick: bool) -> dict[str, Any]:
    from trainer_service.datasets.base import Item
    from trainer_service.datasets.catalog import Catalog
    from trainer_service.domain import Split
    from trainer_service.models.classifier import LinearModel
    from trainer_service.selection.ranking import rank

    out: dict[str, Any] = {"feature_dim": FEATURE_DIM}
    # Catalog memory per item, with Open Images-like ids and URLs.
    n = 20_000 if quick else 100_000
    gc.collect()
    tracemalloc.start()
    catalog = Catalog()
    catalog.add(Item(id=f"{i:016x}",
                     location=f"https://c2.staticflickr.com/6/{i}/{i:011d}_0a1b2c3d4e_o.jpg",
                     split=Split.POOL) for i in range(n))
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["catalog_bytes_per_item"] = current / n
    del catalog
    gc.collect()

    rng = np.random.default_rng(0)
    d = FEATURE_DIM
    model = LinearModel(weight=rng.normal(size=d), bias=0.0,
                        mean=rng.normal(size=d), scale=np.abs(rng.normal(size=d)) + 0.5)
    labelled = rng.normal(size=(2_000, d)).astype(np.float32)
    sizes = (5_000, 20_000) if quick else (5_000, 20_000, 50_000)
    timings = {}
    for size in sizes:
        x = rng.normal(size=(size, d)).astype(np.float32)
        ids = [f"{i:016x}" for i in range(size)]
        seconds = timed(lambda x=x, ids=ids: rank(ids, x, model, labelled, d - EVIDENCE_DIM,
                                                  [], np.random.default_rng(1)), 2)
        timings[size] = seconds
        del x, ids
        gc.collect()
    out["rank_seconds"] = timings
    per_item = [timings[s] / s for s in sizes]
    out["rank_seconds_per_item"] = per_item[-1]
    out["feature_bytes_per_item"] = d * 4
    out["near_duplicates"] = screen_cost()
    return out


def screen_cost() -> dict[str, float]:
    """The near-duplicate screen at 5,000 candidates and 3,000 labels (lite's 1,280-d
    embedding): the first screening, the next after 25 new labels (the incremental path,
    as a share of the first), and a lease of 50 items against 1,000 leased."""
    from trainer_service.selection.near_duplicates import LabelledScreen, LeaseGuard

    rng = np.random.default_rng(3)
    dims, threshold = 1280, 0.95
    x = rng.normal(size=(10_000, dims + 10)).astype(np.float32)
    screen = LabelledScreen(threshold)
    candidates = np.arange(5_000)
    started = time.perf_counter()
    screen.keep(x, dims, candidates, np.arange(5_000, 8_000))
    first = time.perf_counter() - started
    started = time.perf_counter()
    screen.keep(x, dims, candidates[25:], np.arange(5_000, 8_025))
    incremental = time.perf_counter() - started
    index = {f"i{k}": k for k in range(10_000)}
    started = time.perf_counter()
    guard = LeaseGuard(x, index, dims, [f"i{k}" for k in range(8_000, 9_000)], threshold, 50)
    for k in range(9_000, 9_050):
        if guard.admits(f"i{k}"):
            guard.taken(f"i{k}")
    lease = time.perf_counter() - started
    return {"first_s": round(first, 4), "after_25_labels_s": round(incremental, 4),
            "after_25_labels_vs_first": round(incremental / first, 4),
            "lease_50_against_1000_s": round(lease, 4)}


def lmdb_cost(quick: bool) -> dict[str, Any]:
    from feature_service.cache import Entry, FeatureCache

    out = {}
    n = 5_000 if quick else 20_000
    rng = np.random.default_rng(0)
    for name, dim in (("resnext50-frcnn", FEATURE_DIM), ("lite-1290", 1290)):
        with tempfile.TemporaryDirectory() as folder:
            cache = FeatureCache(folder, f"{name}/1", map_size=1 << 30)
            for start in range(0, n, 1000):
                cache.put_many([(f"{i:016x}", Entry(vector=rng.normal(size=dim).astype("<f4")
                                                    .tobytes()))
                                for i in range(start, start + 1000)])
            info, stat = cache.env.info(), cache.env.stat()
            used = (info["last_pgno"] + 1) * stat["psize"]
            on_disk = os.stat(Path(folder) / "data.mdb").st_blocks * 512
            cache.close()
        out[name] = {"vector_bytes": dim * 4, "used_bytes_per_item": used / n,
                     "allocated_bytes_per_item": on_disk / n, "page_bytes": stat["psize"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--skip-models", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"cpu_count": os.cpu_count()}
    report["lmdb"] = lmdb_cost(args.quick)
    report["trainer"] = trainer_cost(args.quick)
    report["decode"] = decode_cost()
    report["lite"] = lite_cost()
    if not args.skip_models:
        report["models"] = model_cost(args.quick)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
