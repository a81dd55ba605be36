"""Time to embed a whole dataset end to end: the offline demo's 7,326 street tiles through
a real trainer and a real `lite` feature service with a cold cache, from the trainer's
start to every item embedded: `python -m bench.embed_dataset` (a part of `make bench`).

Baseline, in the same run: the demo's one-image-at-a-time loop (bench/baseline.py) timed
on a sample of the same tiles and projected to the whole set. Target: under 3 minutes on
two cores. The feature service measures its own settings at start, as in production; the
table it chose from is reported beside the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench import stack
from bench.baseline import measure_baseline
from bench.features import TILES
from bench.service_settings import settings_of

TARGET_S = 180.0
SAMPLE = {True: 32, False: 96}  # tiles the baseline is timed on


def write_manifest(tiles: Path, path: Path) -> int:
    """Every tile as an unlabelled pool item (id,location): all of them are embedded."""
    names = sorted(p.name for p in (tiles / "images").glob("*.jpg"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,location\n" + "".join(
        f"{Path(n).stem},{tiles / 'images' / n}\n" for n in names))
    return len(names)


def all_embedded(status) -> bool:  # type: ignore[no-untyped-def]
    return stack.pool_embedded(status)


def run(short: bool, tiles: Path = TILES) -> dict:
    missing = stack.missing_modules("feature_service", "trainer_service")
    if missing:
        return {"status": "missing", "reason": f"{', '.join(missing)} not built"}
    if not (tiles / "labels.csv").exists():
        return {"status": "skipped", "reason": f"street tiles not found at {tiles}"}
    sample = sorted((tiles / "images").glob("*.jpg"))[:SAMPLE[short]]
    baseline = measure_baseline("lite", sample, 10.0 if short else 30.0)
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        work = Path(tmp)
        count = write_manifest(tiles, work / "manifest.csv")
        feature = stack.feature_service(work, work / "cache")
        trainer = stack.trainer_service(work, work / "trainer", feature.address,
                                        work / "manifest.csv", {"TRAINER_PREFETCH": str(count)})
        load_before = os.getloadavg()[0]
        feature.start().wait_healthy()
        settings = settings_of(feature.address)
        try:
            assert feature.popen is not None
            feature_cpu = stack.cpu_seconds(feature.popen.pid)
            started = time.monotonic()
            trainer.start().wait_healthy()
            asyncio.run(stack.wait_for_trainer(trainer.address, all_embedded,
                                               f"embed {count} tiles", 1800, pause_s=0.25))
            seconds = time.monotonic() - started
            assert trainer.popen is not None
            cpu = (stack.cpu_seconds(feature.popen.pid) - feature_cpu
                   + stack.cpu_seconds(trainer.popen.pid))
            peak = {"feature": round(stack.tree_peak_mib(feature.popen.pid), 1),
                    "trainer": round(stack.tree_peak_mib(trainer.popen.pid), 1)}
        finally:
            trainer.stop()
            feature.stop()
        shutil.rmtree(work / "cache", ignore_errors=True)
    projected = count / baseline["baseline_images_per_s"]
    return {
        "tiles": count, "seconds": round(seconds, 1),
        "images_per_s": round(count / seconds, 2),
        "baseline_images_per_s": baseline["baseline_images_per_s"],
        "baseline_projected_seconds": round(projected, 1),
        "speedup_vs_baseline": round(projected / seconds, 2),
        "cpu_s_per_image": round(cpu / count, 4),
        "baseline_cpu_s_per_image": baseline["baseline_cpu_s_per_image"],
        "cpu_cost_vs_baseline": round(baseline["baseline_cpu_s_per_image"] * count / cpu, 2),
        "target_seconds": TARGET_S, "met": seconds < TARGET_S,
        "settings": settings,
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "peak_rss_mib": peak,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embed_dataset",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true",
                        help="a smaller sample for the baseline (the tiles are all embedded)")
    print(json.dumps(run(parser.parse_args(argv).short), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
