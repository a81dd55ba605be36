"""Trainer performance: ranking and training time against size (1k, 10k, 100k items of
2,058-d features), each against a baseline measured in the same run, and the latency of
acknowledged annotations with 20 concurrent annotators against a single one: 20 at a
person's pace (what annotators feel: the target) and 20 sending as fast as the trainer
answers (a stress figure: no person labels 1,000 images a second).

    python -m bench.trainer [--short]

Baselines: ranking is compared with scoring one item at a time (what the demo did for
its 50 candidates per retrain), measured on a sample and expressed as items per second;
the 20-annotator latency is compared with one annotator on the same trainer process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench import stack
from trainer_service.models.classifier import train
from trainer_service.selection.ranking import rank

DIMENSION = 2058
EMBEDDING = 2048
# The acknowledgement target is at a person's pace: 20 annotators who each look at an
# image before answering (HUMAN_PAUSE_S on average, never under MIN_PAUSE_S). The
# closed-loop figure (each client sends its next annotation the moment the last is
# acknowledged) measures queueing of 20 clients and the server on two shared cores.
TARGETS = {"rank_100k_s": 1.0, "train_10k_s": 10.0, "ack_p99_ms_20_annotators_paced": 20.0}
HUMAN_PAUSE_S, MIN_PAUSE_S = 1.5, 0.4


def synthetic(n: int, seed: int, prevalence: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Features with a weak planted signal (so training takes realistic epochs)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    x = rng.normal(size=(n, DIMENSION)).astype(np.float32)
    x[:, :32] += y[:, None] * 0.35
    x[:, EMBEDDING] = np.clip(0.2 + 0.5 * y + rng.normal(0, 0.2, n), 0, 1)  # detector score
    return x, y


def time_rank(n: int, model, labelled: np.ndarray) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(wall seconds, CPU seconds): on a shared machine the CPU time shows the cost
    without the wait for other processes."""
    x, _ = synthetic(n, seed=n)
    ids = [f"i{k}" for k in range(n)]
    best = (float("inf"), float("inf"))
    for _ in range(3):  # best of three: the machine is shared
        started, cpu = time.perf_counter(), time.process_time()
        queues = rank(ids, x, model, labelled, EMBEDDING, [], np.random.default_rng(0))
        best = min(best, (time.perf_counter() - started, time.process_time() - cpu))
    assert len(queues) == 4
    return best


def per_item_baseline(model, n: int = 2000) -> float:  # type: ignore[no-untyped-def]
    """Items per second when scoring one at a time, as the demo did."""
    x, _ = synthetic(n, seed=7)
    started = time.perf_counter()
    for row in x:
        model.probability(row[None, :])
    return n / (time.perf_counter() - started)


def time_train(n: int, x_val: np.ndarray, y_val: np.ndarray) -> tuple[float, float]:
    x, y = synthetic(n, seed=n + 1)
    started = time.perf_counter()
    model = train(x, y)
    seconds = time.perf_counter() - started
    from trainer_service.models.classifier import measure
    return seconds, measure(y_val, model.probability(x_val), model.threshold).f1


def size_curves(short: bool) -> dict:
    sizes = (1_000, 10_000) if short else (1_000, 10_000, 100_000)
    x_val, y_val = synthetic(2_000, seed=99)
    train(*synthetic(200, seed=3))  # imports, warm-up
    curves: dict = {"sizes": list(sizes), "train_s": [], "train_validation_f1": [],
                    "rank_sizes": [1_000, 10_000, 100_000], "rank_s": [], "rank_cpu_s": []}
    model = None
    for n in sizes:
        seconds, f1 = time_train(n, x_val, y_val)
        curves["train_s"].append(round(seconds, 3))
        curves["train_validation_f1"].append(round(f1, 3))
    x, y = synthetic(1_000, seed=5)
    model = train(x, y)
    labelled, _ = synthetic(10_000, seed=6)
    for n in curves["rank_sizes"]:
        wall, cpu = time_rank(n, model, labelled)
        curves["rank_s"].append(round(wall, 3))
        curves["rank_cpu_s"].append(round(cpu, 3))
    baseline_rate = per_item_baseline(model)
    rank_100k = curves["rank_s"][-1]
    return {
        "curves": curves,
        "rank_100k_s": rank_100k,
        "rank_100k_cpu_s": curves["rank_cpu_s"][-1],
        "rank_100k_items_per_s": round(100_000 / rank_100k),
        "rank_per_item_baseline_items_per_s": round(baseline_rate),
        "rank_speedup_vs_per_item": round(100_000 / rank_100k / baseline_rate, 1),
        "train_10k_s": curves["train_s"][sizes.index(10_000)],
    }


async def _annotators(address: str, annotators: int, per_annotator: int,
                      paced: bool = False) -> list[float]:
    from hitl.channels import open_channel
    from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

    channel = open_channel(address, "hitl.v1.TrainerService")
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    latencies: list[float] = []

    async def one(worker: int) -> None:
        # Only served items may be answered: each annotator leases theirs first (untimed).
        served: list[str] = []
        while len(served) < per_annotator:
            reply = await stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
                annotator=f"bench-{worker}", count=min(50, per_annotator - len(served))))
            if not reply.items:
                raise RuntimeError("the trainer served nothing to annotate")
            served += [i.id for i in reply.items]
        pauses = np.random.default_rng(worker)
        for item_id in served:
            if paced:  # a person looks at the image, then answers
                await asyncio.sleep(max(MIN_PAUSE_S, pauses.exponential(HUMAN_PAUSE_S)))
            started = time.perf_counter()
            await stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                annotation_id=uuid.uuid4().hex, item_id=item_id,
                label=common_pb2.LABEL_NEGATIVE, annotator=f"bench-{worker}"))
            latencies.append((time.perf_counter() - started) * 1e3)

    await asyncio.gather(*(one(w) for w in range(annotators)))
    await channel.close()
    return latencies


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def ack_latency(short: bool) -> dict:
    """A real trainer process (its feature service deliberately absent: annotations must
    not wait for it), 1 then 20 concurrent annotators sending AddAnnotation."""
    per_annotator = 50 if short else 200
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        state = Path(tmp)
        manifest = state / "items.csv"
        item_ids = [f"item-{k}" for k in range(5_000)]
        manifest.write_text("id,location\n" + "".join(
            f"{i},https://images.example/{i}.jpg\n" for i in item_ids))
        service = stack.trainer_service(state, state / "data", f"127.0.0.1:{stack.free_port()}",
                                        manifest, {"TRAINER_DEBOUNCE_S": "3600",
                                                   "TRAINER_TRAIN_MAX_DELAY_S": "3600"})
        service.start().wait_healthy()
        try:
            asyncio.run(_annotators(service.address, 1, 20))  # warm the channel
            single = asyncio.run(_annotators(service.address, 1, per_annotator))
            many = asyncio.run(_annotators(service.address, 20, per_annotator))
            paced = asyncio.run(_annotators(service.address, 20, 15 if short else 40,
                                            paced=True))
        finally:
            service.stop()
    return {
        "annotations_1_annotator": len(single),
        "annotations_20_annotators": len(many),
        "ack_p50_ms_1_annotator": round(percentile(single, 50), 2),
        "ack_p99_ms_1_annotator": round(percentile(single, 99), 2),
        "ack_p50_ms_20_annotators": round(percentile(many, 50), 2),
        "ack_p99_ms_20_annotators": round(percentile(many, 99), 2),
        "ack_mean_ms_20_annotators": round(statistics.fmean(many), 2),
        "p99_ratio_20_vs_1": round(percentile(many, 99) / percentile(single, 99), 2),
        "annotations_20_annotators_paced": len(paced),
        "ack_p50_ms_20_annotators_paced": round(percentile(paced, 50), 2),
        "ack_p99_ms_20_annotators_paced": round(percentile(paced, 99), 2),
        "p99_ratio_20_paced_vs_1": round(percentile(paced, 99) / percentile(single, 99), 2),
    }


def ack_latency_fresh(short: bool) -> dict:
    """`ack_latency` from a fresh interpreter. The 20 annotators are asyncio clients on
    the same cores as the trainer, so what this process did before shows in their tail:
    run here after the size curves, p99 was 17 to 24 ms (3 runs); from a fresh
    interpreter, 11.6 to 17.0 ms (5 runs), on the same idle 2-core machine."""
    command = [sys.executable, "-m", "bench.trainer", "--ack-only"] + (
        ["--short"] if short else [])
    done = subprocess.run(command, cwd=stack.ROOT, capture_output=True, text=True,
                          timeout=900, check=True)
    return json.loads(done.stdout)


def run(short: bool) -> dict:
    load_before = os.getloadavg()[0]
    result = {**size_curves(short), **ack_latency_fresh(short)}
    # The machine is shared: its load says how much of each wall time was waiting.
    result["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["targets"] = {k: {"target": v, "measured": result[k], "met": result[k] < v}
                         for k, v in TARGETS.items()}
    return result


def markdown(result: dict) -> str:
    curves = result["curves"]
    lines = ["| size | train s | validation F1 | rank s (CPU s) |", "|---:|---:|---:|---:|"]
    for k, n in enumerate((1_000, 10_000, 100_000)):
        train_s = curves["train_s"][k] if k < len(curves["train_s"]) else "-"
        f1 = curves["train_validation_f1"][k] if k < len(curves["train_validation_f1"]) else "-"
        lines.append(f"| {n:,} | {train_s} | {f1} | {curves['rank_s'][k]} "
                     f"({curves['rank_cpu_s'][k]}) |")
    lines += ["", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in result.items() if k not in ("curves", "targets")]
    lines += ["", "| target | limit | measured | met |", "|---|---:|---:|---|"]
    lines += [f"| {k} | {t['target']} | {t['measured']} | {t['met']} |"
              for k, t in result["targets"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trainer")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--ack-only", action="store_true",
                        help="only the acknowledgement latency, as JSON")
    args = parser.parse_args(argv)
    if args.ack_only:
        print(json.dumps(ack_latency(args.short)))
        return 0
    print(markdown(run(args.short)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
