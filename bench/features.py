"""Feature service throughput and memory, measured in one run on the same images:
`python -m bench.features [--short]` (also a part of `make bench`).

For each extractor whose models are present:
- baseline: what the old demo did, one image at a time, full-size decode, both models
  in sequence, no batching, in this process (bench/baseline.py), once before the service
  and once after it, the two averaged (the machine's speed drifts);
- the service as a real process over gRPC, cold cache (every image through the models)
  and warm cache (the same requests again), with concurrent callers;
- cache-only `Lookup` and warm `Embed` of 1,000 items per request over gRPC;
- the service's peak resident memory (VmHWM);
- float32 vs float16 features: cross-validated F1 of a logistic regression on the
  cold-pass features, to show what storing float16 would cost.
Ratios are against the baseline measured in the same run.

Where the `resnext50-frcnn` weights are absent (they need the internet), both sides use
the same architectures with random weights instead (bench/untrained_feature_service.py):
the speed and memory figures hold, the features and their F1 mean nothing and are not
reported. `--device cuda` measures on a GPU, the baseline included.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import gc
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np

from bench import stack
from bench.baseline import around, measure_baseline, rate
from bench.service_settings import calibration_table, settings_of
from bench.stack import ROOT, feature_service, free_port
from bench.vector_diff import float16_effect

TILES = Path(os.environ.get("HITL_TEST_DATA", ROOT.parent / "shared" / "data")) / \
    "streetview-tiles"
LOOKUP_ITEMS = 1000
# (images through the service, images through the baseline), short and full, on a CPU.
# Faster R-CNN at 800 px takes seconds per image on a CPU, hence the small counts.
COUNTS = {"lite": {True: (48, 12), False: (256, 96)},
          "resnext50-frcnn": {True: (6, 2), False: (32, 6)}}
GPU_COUNTS = {True: (128, 16), False: (1024, 64)}  # resnext50-frcnn on a GPU
CALLERS, IMAGES_PER_CALL = 8, 8
# The service, cold, against the one-at-a-time loop on a CPU: never slower, and lite at
# least 5x (issue 25).
TARGETS = {"lite": 5.0, "resnext50-frcnn": 1.0}


def tile_set(count: int) -> tuple[list[Path], list[int]]:
    """`count` tiles, a quarter of them bicycles, in a fixed order."""
    with (TILES / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    positives = [r for r in rows if r["label"] == "1"][: count // 4]
    negatives = [r for r in rows if r["label"] == "0"][: count - len(positives)]
    chosen = sorted(positives + negatives, key=lambda r: r["filename"])
    return [TILES / r["filename"] for r in chosen], [int(r["label"]) for r in chosen]


def scrape(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def embed_all(stub, refs: list, feature_pb2) -> tuple[float, list]:  # type: ignore[no-untyped-def]
    """Sends `refs` in calls of IMAGES_PER_CALL from CALLERS concurrent callers."""
    calls = [refs[i:i + IMAGES_PER_CALL] for i in range(0, len(refs), IMAGES_PER_CALL)]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CALLERS) as pool:
        replies = list(pool.map(
            lambda images: stub.Embed(feature_pb2.EmbedRequest(images=images), timeout=3600),
            calls))
    seconds = time.perf_counter() - started
    results = [r for reply in replies for r in reply.results]
    failed = [r.id for r in results if r.WhichOneof("outcome") != "features"]
    if failed:
        raise RuntimeError(f"{len(failed)} images failed, e.g. {failed[:3]}")
    return seconds, results


def measure_service(name: str, paths: list[Path], labels: list[int], short: bool,
                    device: str = "cpu", untrained: bool = False) -> dict:
    from hitl.v1 import feature_pb2, feature_pb2_grpc

    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        service = feature_service(Path(tmp), Path(tmp) / "cache", name)
        if untrained:
            service.module = "bench.untrained_feature_service"
        service.env["FEATURE_DEVICE"] = device
        metrics_port = free_port()
        service.env["FEATURE_METRICS_PORT"] = str(metrics_port)
        service.start()
        try:
            service.wait_healthy()
            settings = settings_of(service.address)
            channel = grpc.insecure_channel(service.address, options=[
                ("grpc.max_receive_message_length", 256 << 20),
                ("grpc.max_send_message_length", 256 << 20)])
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            info = stub.Describe(feature_pb2.DescribeRequest(), timeout=30).extractor
            refs = [feature_pb2.ImageRef(id=p.name, data=p.read_bytes()) for p in paths]
            assert service.popen is not None
            cpu_before = stack.cpu_seconds(service.popen.pid)
            cold_s, results = embed_all(stub, refs, feature_pb2)
            cold_cpu = stack.cpu_seconds(service.popen.pid) - cpu_before
            # The warm-up batch bypasses the batcher, so these count requests only.
            batches = scrape(metrics_port, "feature_batch_size_count")
            batched = scrape(metrics_port, "feature_batch_size_sum")
            warm_s, warm = embed_all(stub, refs, feature_pb2)
            assert all(r.features.cached for r in warm)
            vectors = np.stack([np.frombuffer(r.features.vector, "<f4") for r in results])

            # 1,000 distinct ids for the tiles already embedded: the first call names them
            # (the features are cached by content already), then every call is warm.
            keys = [f"lookup-{i}" for i in range(LOOKUP_ITEMS)]
            repeats = 5 if short else 20
            embed_warm = feature_pb2.EmbedRequest(images=[
                feature_pb2.ImageRef(id=k, data=refs[i % len(refs)].data)
                for i, k in enumerate(keys)])
            stub.Embed(embed_warm, timeout=60)
            started = time.perf_counter()
            for _ in range(repeats):
                reply = stub.Embed(embed_warm, timeout=60)
            embed_s = time.perf_counter() - started
            assert all(r.features.cached for r in reply.results)
            lookup = feature_pb2.LookupRequest(ids=keys)
            stub.Lookup(lookup, timeout=60)
            started = time.perf_counter()
            for _ in range(repeats):
                reply = stub.Lookup(lookup, timeout=60)
            lookup_s = time.perf_counter() - started
            assert all(r.WhichOneof("outcome") == "features" for r in reply.results)
            channel.close()
            peak_mib = stack.tree_peak_mib(service.popen.pid)  # the workers' included
        finally:
            service.stop()
    figures = {
        "device": info.device,
        "version": info.version,
        "service_images": len(paths),
        "cold_images_per_s": rate(len(paths), cold_s),
        "cold_mean_batch": round(batched / max(batches, 1), 1),
        "warm_images_per_s": rate(len(paths), warm_s),
        "lookup_1000_items_per_s": rate(LOOKUP_ITEMS * repeats, lookup_s),
        "warm_embed_1000_items_per_s": rate(LOOKUP_ITEMS * repeats, embed_s),
        "cold_cpu_s_per_image": round(cold_cpu / len(paths), 4),
        "peak_rss_mib": round(peak_mib, 1),
        "settings": settings,
    }
    if not untrained and sum(labels) >= 5 and len(labels) - sum(labels) >= 5:
        figures["float16_vs_float32"] = float16_effect(vectors, labels)
    return figures


def weights_missing(name: str) -> str | None:
    """Why the pretrained weights of `name` cannot be loaded, or None when they can."""
    if name != "resnext50-frcnn":
        return None
    from feature_service.extractors.resnext_frcnn import WEIGHTS, weights_file

    missing = [str(weights_file(w)) for w in WEIGHTS if not weights_file(w).is_file()]
    return f"pretrained weights missing: {', '.join(missing)}" if missing else None


def measure(name: str, short: bool, device: str = "cpu") -> dict:
    gpu = device != "cpu"
    service_count, baseline_count = GPU_COUNTS[short] if gpu else COUNTS[name][short]
    paths, labels = tile_set(service_count)
    missing = weights_missing(name)

    def baseline_pass() -> dict:
        # Two passes of half the time one pass had: the benchmark takes as long as before.
        rates = measure_baseline(name, paths[:baseline_count], 5.0 if short else 30.0,
                                 device, untrained=missing is not None)
        gc.collect()  # the baseline's models leave before anything else runs
        return rates

    figures: dict = {"weights": "pretrained"}
    if missing:
        figures = {"weights": "random, same architectures: speed and memory only",
                   "why": missing}
    before = baseline_pass()
    figures.update({"load_average_1m": round(os.getloadavg()[0], 2),
                    **measure_service(name, paths, labels, short, device,
                                      untrained=missing is not None)})
    baseline = around(before, baseline_pass())
    figures.update(baseline)
    baseline_rate = baseline["baseline_images_per_s"]
    figures["cold_vs_baseline"] = round(figures["cold_images_per_s"] / baseline_rate, 2)
    figures["warm_vs_baseline"] = round(figures["warm_images_per_s"] / baseline_rate, 2)
    figures["cpu_cost_vs_baseline"] = round(
        figures["baseline_cpu_s_per_image"] / max(figures["cold_cpu_s_per_image"], 1e-9), 2)
    target = TARGETS.get(name, 1.0) if device == "cpu" else 1.0
    figures["target_cold_vs_baseline"] = target
    figures["met"] = figures["cold_vs_baseline"] >= target
    return figures


def run(short: bool, device: str = "cpu") -> dict:
    if not (TILES / "labels.csv").exists():
        return {"status": "skipped", "reason": f"street tiles not found at {TILES}"}
    return {"image_set": "streetview tiles, 120x120 JPEG", "cpus": os.cpu_count(),
            "callers": CALLERS, "images_per_call": IMAGES_PER_CALL,
            "extractors": {name: measure(name, short, device) for name in COUNTS}}


def markdown(result: dict) -> str:
    if "extractors" not in result:
        return f"features: {result.get('status')}: {result.get('reason')}"
    lines = ["| extractor | baseline img/s (default threads / 1 thread; before, after) | "
             "cold img/s (x baseline) | CPU s/image, cold vs baseline | "
             "warm img/s (x baseline) | Lookup 1,000 items/s | warm Embed 1,000 items/s | "
             "peak RSS MiB | F1 float32 / float16 |", "|---|---|---|---|---|---|---|---|---|"]
    for name, f in result["extractors"].items():
        if f.get("status") == "skipped":
            lines.append(f"| {name} | skipped: {f['reason']} | | | | | | | |")
            continue
        f16 = f.get("float16_vs_float32", {})
        weights = ", random weights" if f["weights"] != "pretrained" else ""
        lines.append(
            f"| {name} ({f['device']}{weights}) | "
            f"{f['baseline_default_threads_images_per_s']} / "
            f"{f.get('baseline_one_thread_images_per_s', '-')}; "
            f"{f['baseline_before_images_per_s']}, {f['baseline_after_images_per_s']} | "
            f"{f['cold_images_per_s']} ({f['cold_vs_baseline']}x) | "
            f"{f['cold_cpu_s_per_image']} vs {f['baseline_cpu_s_per_image']} "
            f"({f['cpu_cost_vs_baseline']}x cheaper) | "
            f"{f['warm_images_per_s']} ({f['warm_vs_baseline']}x) | "
            f"{f['lookup_1000_items_per_s']} | {f['warm_embed_1000_items_per_s']} | "
            f"{f['peak_rss_mib']} | {f16.get('f1_float32')} / {f16.get('f1_float16')} |")
    for name, f in result["extractors"].items():
        settings = f.get("settings")
        if settings:
            lines += ["", f"{name}: the service chose {settings['precision']}, "
                      f"{settings['memory_layout']}, {settings['workers']} worker(s) x "
                      f"{settings['intra_op_threads']} thread(s), batch "
                      f"{settings['max_batch']} ({settings['inference']}) in "
                      f"{settings['calibration_s']} s, from:", "",
                      calibration_table(settings)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.features",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the quick CI form (~1 min)")
    parser.add_argument("--only", choices=sorted(COUNTS), help="one extractor")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where both sides run (lite always runs on the CPU)")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        args.only = "resnext50-frcnn"
    if args.only:
        for name in list(COUNTS):
            if name != args.only:
                COUNTS.pop(name)
    result = run(args.short, args.device)
    print(json.dumps(result, indent=2))
    print()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
