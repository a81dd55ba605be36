"""Images/s of an extractor at several batch sizes against the one-at-a-time baseline,
measured in one run on the same images: `python -m bench.extractor_speed`.

Each timed pass decodes, prepares and extracts in sequence (no overlap), so the figures
are the models' and runtime's share of the service's throughput.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import time
from pathlib import Path

from PIL import Image

from bench.baseline import load_baseline
from feature_service.extractors import Settings, load_extractor
from feature_service.extractors.runtime import cpu_threads, resolve_device

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractor", default="lite")
    parser.add_argument("--images", type=Path,
                        default=ROOT.parent / "shared" / "data" / "streetview-tiles" / "images")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--models-dir", type=Path, default=ROOT / ".models")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args(argv)

    paths = sorted(args.images.glob("*.jpg"))[: args.count]
    blobs = [p.read_bytes() for p in paths]
    device = "cpu" if args.extractor == "lite" else resolve_device(args.device)
    extractor = load_extractor(args.extractor, args.models_dir, device,
                               Settings(args.precision, threads=cpu_threads()))
    extractor.warm_up()
    baseline = load_baseline(args.extractor, args.models_dir, extractor.info.device)
    baseline(paths[0])

    def one_at_a_time() -> None:
        for path in paths:
            baseline(path)

    def batched(size: int) -> None:
        for i in range(0, len(blobs), size):
            batch = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs[i:i + size]]
            extractor.extract([extractor.prepare(image) for image in batch])

    runs = {"baseline": one_at_a_time}
    for size in (int(s) for s in args.batch_sizes.split(",")):
        runs[f"batch_{size}"] = functools.partial(batched, size)
    # Rounds interleave the modes and the best round counts, so that load from other
    # processes on a shared box skews every mode alike and as little as possible.
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    rates = {name: round(len(paths) / seconds, 2) for name, seconds in best.items()}
    result = {"extractor": extractor.info.name, "device": extractor.info.device,
              "images": len(paths), "threads": cpu_threads(), "rounds": args.rounds,
              "load_average_1m": round(os.getloadavg()[0], 2), "images_per_s": rates,
              "ratio_to_baseline": {name: round(r / rates["baseline"], 2)
                                    for name, r in rates.items() if name != "baseline"}}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
