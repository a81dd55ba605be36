"""Does the annotator wait for evaluation? A large labelled manifest (tiles repeated under
new ids, so it holds as many rows as asked) through real feature (lite) and trainer
processes: how long from the trainer's start until it serves its first items, and its
first detector-guided ones (cold-start items with a detector score), while the
validation and evaluation splits (40% of the rows) wait as a background sample.

    python -m bench.startup                 # 100,000 rows
    python -m bench.startup --rows 20000

`run(short)` is the `make bench` part (20,000 rows short, 100,000 full).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import shutil
import time
from pathlib import Path

from bench import stack
from bench.replay import TrainerClient
from tools.probes import grpc_serving

DEFAULT_TILES = stack.ROOT.parent / "shared" / "data" / "streetview-tiles"
LIMIT_S = 120.0


def write_manifest(tiles: Path, rows: int, path: Path) -> int:
    """`rows` labelled rows cycling over the tiles; returns how many distinct images."""
    with (tiles / "labels.csv").open(newline="") as f:
        source = list(csv.DictReader(f))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "location", "label"])
        for i in range(rows):
            row = source[i % len(source)]
            writer.writerow([f"row-{i:06d}", str(tiles / row["filename"]), row["label"]])
    return min(rows, len(source))


async def _watch(address: str, started: float) -> dict:
    """Leases one item at a time (released unlabelled) until one is detector-guided."""
    client = TrainerClient(address)
    out: dict = {}
    try:
        while time.monotonic() - started < LIMIT_S:
            status = await client.status()
            if "first_item_s" not in out or "detector_guided_s" not in out:
                items = await client.lease(5)
                now = time.monotonic() - started
                if items and "first_item_s" not in out:
                    out["first_item_s"] = round(now, 1)
                guided = [i for i in items if i.strategy == client.pb.STRATEGY_COLD_START
                          and i.score > 0]
                if guided:
                    out["detector_guided_s"] = round(now, 1)
                    out["detector_score_of_first"] = round(max(i.score for i in guided), 3)
                    out["status_then"] = {
                        "pool_embedded": status.counts.embedded,
                        "validation_embedded": status.counts.validation_embedded,
                        "evaluation_embedded": status.counts.evaluation_embedded,
                        "pending": status.extraction.pending,
                        "items_loaded": status.loading.items_loaded}
                    return out
            await asyncio.sleep(0.5)
        out["timed_out_s"] = LIMIT_S
        return out
    finally:
        await client.close()


def measure(rows: int, work: Path, tiles: Path = DEFAULT_TILES) -> dict:
    # A cold start: no features, no trainer state.
    for stale in ("trainer", "feature-cache"):
        shutil.rmtree(work / stale, ignore_errors=True)
    manifest = work / "manifest.csv"
    distinct = write_manifest(tiles, rows, manifest)
    feature = stack.feature_service(work, work / "feature-cache").start()
    try:
        feature.wait_healthy()
        trainer = stack.trainer_service(work, work / "trainer", feature.address, manifest)
        started = time.monotonic()
        trainer.start()
        try:
            while not grpc_serving(trainer.port):
                time.sleep(0.1)
            serving = round(time.monotonic() - started, 1)
            result = asyncio.run(_watch(trainer.address, started))
        finally:
            trainer.stop()
    finally:
        feature.stop()
    return {"rows": rows, "distinct_images": distinct, "trainer_serving_s": serving, **result,
            "peak_rss_mib": {"trainer": trainer.peak_mib, "feature": feature.peak_mib}}


def run(short: bool) -> dict:
    import tempfile
    if not (DEFAULT_TILES / "labels.csv").exists():
        return {"status": "skipped", "reason": f"no tiles at {DEFAULT_TILES}"}
    with tempfile.TemporaryDirectory(prefix="hitl-startup-") as tmp:
        return measure(20_000 if short else 100_000, Path(tmp))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--work", type=Path, default=stack.ROOT / ".run" / "startup")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.rows, args.work), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
