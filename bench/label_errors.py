"""Label errors and their review, measured: simulated annotators who answer wrongly at a
given rate label street tiles through real feature (`lite`) and trainer processes over
gRPC, three runs per seed with the same budget of answers:

- clean:  no errors, no review;
- noisy:  errors, no review (TRAINER_REVIEW_SHARE=0);
- review: errors, and the trainer's review of likely label errors (a second annotator,
  then a third on a disagreement).

    python -m bench.label_errors                          # every tile, 3 seeds
    python -m bench.label_errors --limit 1500 --budget 400 --seeds 1

Three annotators take turns (a review item always goes to somebody else); every answer
on a pool item counts against the budget, review answers included; gold items do not.
Every `step` answers the trainer retrains and the model's F1 on its held-out evaluation
split is recorded. Reported: both curves (and the clean one), the final F1s and how much
of the gap the review closed; how many of the first 50 items served for review were real
errors; and, on the noisy run's final labels, how many of the 50 labels the trainer's
confident-learning ranking finds most suspicious are real errors. Features come from the
simulator's cache (`.run/sim-cache/features-lite`). Outputs: `artifacts/label-errors/`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import shutil
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench import curves, stack
from bench.dataset import Example, read_labelled, stratified_subset, write_manifest
from bench.progress import Progress
from hitl.channels import open_channel
from trainer_service.config import Config

ROOT = stack.ROOT
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "streetview-tiles" / "labels.csv"
CACHE = ROOT / ".run" / "sim-cache"
OUT = ROOT / "artifacts" / "label-errors"
ANNOTATORS = ("sim-a", "sim-b", "sim-c")
BATCH = 5
TOP = 50
TAIL = 3
PAUSE_S = 1.0
RUNS = ("clean", "noisy", "review")


@dataclass
class Run:
    name: str
    seed: int
    curve: list[dict] = field(default_factory=list)
    first_reviews: list[bool] = field(default_factory=list)  # was the first answer wrong?
    labels: dict[str, int] = field(default_factory=dict)  # in force at the end, by majority
    counts: dict[str, int] = field(default_factory=dict)


def wrong(seed: int, annotator: str, item_id: str, rate: float) -> bool:
    """Whether this annotator answers this item wrongly: fixed per (seed, annotator,
    item), so runs differ only in what they serve, not in the annotators' luck."""
    digest = hashlib.blake2b(f"{seed}/{annotator}/{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def majority(answers: dict[str, int]) -> int | None:
    positive = sum(answers.values())
    return None if 2 * positive == len(answers) else int(2 * positive > len(answers))


async def replay(address: str, truth: dict[str, int], run: Run, budget: int, step: int,
                 rate: float) -> Run:
    from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

    channel = open_channel(address, "hitl.v1.TrainerService", default_deadline_s=300)
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    given: dict[str, dict[str, int]] = {}  # pool item -> annotator -> answer
    answers, next_mark, turn = 0, step, 0
    bar = Progress(f"{run.name} seed {run.seed}", budget)
    try:
        while answers < budget:
            annotator = ANNOTATORS[turn % len(ANNOTATORS)]
            turn += 1
            items = (await stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
                annotator=annotator, count=BATCH))).items
            if not items and turn > 10 * len(ANNOTATORS) and answers == 0:
                raise RuntimeError("the trainer serves nothing")
            for item in items:
                flip = rate > 0 and wrong(run.seed, annotator, item.id, rate)
                answer = truth[item.id] ^ int(flip)
                await stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                    annotation_id=uuid.uuid4().hex, item_id=item.id, annotator=annotator,
                    label=common_pb2.LABEL_POSITIVE if answer else common_pb2.LABEL_NEGATIVE))
                if item.strategy == trainer_pb2.STRATEGY_GOLD:
                    continue
                earlier = given.setdefault(item.id, {})
                if item.strategy == trainer_pb2.STRATEGY_REVIEW and len(earlier) == 1:
                    run.first_reviews.append(next(iter(earlier.values())) != truth[item.id])
                earlier[annotator] = answer
                answers += 1
            if answers >= next_mark:
                reply = await stub.Retrain(trainer_pb2.RetrainRequest())
                # People take minutes for what the simulator answers in a second or two:
                # a pause after each model lets the background search for likely errors
                # keep up as it would with them.
                await asyncio.sleep(PAUSE_S)
                if reply.HasField("model"):
                    m = reply.model.evaluation
                    run.curve.append({"run": run.name, "seed": run.seed, "labels": answers,
                                      "f1": round(m.f1, 6), "precision": round(m.precision, 6),
                                      "recall": round(m.recall, 6)})
                    bar.update(answers, f"F1 {m.f1:.3f}")
                next_mark += step
        counts = (await stub.GetStatus(trainer_pb2.GetStatusRequest())).status.counts
        run.counts = {k: getattr(counts, k) for k in ("reviewed", "corrected", "contested")}
    finally:
        await channel.close()
    run.labels = {i: m for i, a in given.items() if (m := majority(a)) is not None}
    bar.close(answers, f"F1 {run.curve[-1]['f1']:.3f}" if run.curve else "no model")
    return run


def embed(feature_addr: str, examples: list[Example]) -> dict[str, np.ndarray]:
    """Every example's vector from the feature service (its cache, after the runs)."""
    import grpc

    from hitl.v1 import feature_pb2, feature_pb2_grpc

    out: dict[str, np.ndarray] = {}
    with grpc.insecure_channel(feature_addr) as channel:
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        for start in range(0, len(examples), 64):
            refs = [feature_pb2.ImageRef(id=e.id, data=Path(e.location).read_bytes())
                    for e in examples[start:start + 64]]
            for r in stub.Embed(feature_pb2.EmbedRequest(images=refs), timeout=600).results:
                out[r.id] = np.frombuffer(r.features.vector, "<f4")
    return out


def top_suspects(vectors: dict[str, np.ndarray], labels: dict[str, int],
                 truth: dict[str, int], seed: int) -> dict:
    """The trainer's own ranking (trainer_service.label_errors) on the noisy run's labels
    in force: how many of the most suspicious are real errors."""
    from trainer_service.label_errors import suspects

    ids = sorted(labels)
    x = np.stack([vectors[i] for i in ids])
    y = np.asarray([labels[i] for i in ids])
    found = suspects(x, y, seed)
    top = [ids[row] for row, _ in found[:TOP]]
    errors = sum(labels[i] != truth[i] for i in ids)
    return {"labels": len(ids), "errors": errors, "flagged": len(found), "top": len(top),
            "top_errors": sum(labels[i] != truth[i] for i in top)}


async def measure(args: argparse.Namespace, examples: list[Example]) -> dict:
    work = CACHE / "label-errors"
    manifest = write_manifest(examples, work / "manifest.csv")
    truth = {e.id: int(e.label) for e in examples}
    feature = stack.feature_service(work, CACHE / "features-lite").start()
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:12]
    template = work / f"trainer-template-{digest}"
    base = {"TRAINER_PREFETCH": str(len(examples)), "TRAINER_RECHECK_SHARE": "0"}
    runs: list[Run] = []
    suspects: list[dict] = []
    try:
        feature.wait_healthy()
        if not template.exists():  # every image embedded once, no label: copied per run
            await _trainer(work, feature, manifest, "warm-up", base, None, template, None)
        for seed in range(args.seeds):
            for name in RUNS:
                env = {**base, "TRAINER_SEED": str(seed),
                       "TRAINER_REVIEW_SHARE": str(args.review_share if name == "review" else 0)}
                run = Run(name, seed)
                rate = 0.0 if name == "clean" else args.error_rate
                await _trainer(work, feature, manifest, f"{name}-{seed}", env, template, None,
                               lambda address, r=run, e=rate: replay(
                                   address, truth, r, args.budget, args.step, e))
                runs.append(run)
                if name == "noisy":
                    vectors = embed(feature.address, [e for e in examples if e.id in run.labels])
                    suspects.append(top_suspects(vectors, run.labels, truth, seed))
    finally:
        feature.stop()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "runs.json").write_text(json.dumps(
        {"runs": [asdict(r) for r in runs], "suspects": suspects}))
    return report(args, examples, runs, suspects)


async def _trainer(work: Path, feature: stack.Service, manifest: Path, name: str,
                   env: dict[str, str], template: Path | None, keep: Path | None,
                   job=None) -> None:  # type: ignore[no-untyped-def]
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    if template is not None:
        shutil.copytree(template, data)
    service = stack.trainer_service(work, data, feature.address, manifest, env, name=name)
    service.start()
    try:
        service.wait_healthy()
        await wait_embedded(service.address)
        if job is not None:
            await job(service.address)
    finally:
        service.stop()
        if keep is not None and service.popen is not None and service.popen.returncode == 0:
            shutil.copytree(data, keep)
        shutil.rmtree(data, ignore_errors=True)


async def wait_embedded(address: str, timeout_s: float = 3600) -> None:
    """Until the dataset is loaded and every pool item embedded."""
    from hitl.v1 import trainer_pb2, trainer_pb2_grpc

    deadline = time.monotonic() + timeout_s
    channel = open_channel(address, "hitl.v1.TrainerService", default_deadline_s=30)
    try:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        while True:
            s = (await stub.GetStatus(trainer_pb2.GetStatusRequest())).status
            if (s.loading.state == trainer_pb2.LOADING_STATE_READY and s.counts.pool
                    and s.counts.embedded >= s.counts.pool and not s.extraction.pending):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"trainer not ready: {s.counts.embedded}/{s.counts.pool}")
            await asyncio.sleep(0.5)
    finally:
        await channel.close()


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def report(args: argparse.Namespace, examples: list[Example], runs: list[Run],
           suspects: list[dict]) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    # A model is trained once `step` answers are in, a few more when a batch overshoots:
    # on the step's grid the seeds line up for the chart.
    rows = [{**row, "labels": args.step * round(row["labels"] / args.step)}
            for run in runs for row in run.curve]
    with (OUT / "curves.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ("run", "seed", "labels", "f1", "precision", "recall"))
        writer.writeheader()
        writer.writerows(rows)
    truth = {e.id: int(e.label) for e in examples}
    final = {name: [r.curve[-1]["f1"] for r in runs if r.name == name and r.curve]
             for name in RUNS}
    # One model's F1 moves by a few points from one retraining to the next: the mean of
    # the last TAIL models is the steadier figure.
    tail = {name: [_mean([p["f1"] for p in r.curve[-TAIL:]])
                   for r in runs if r.name == name and r.curve] for name in RUNS}
    errors_left = {name: [sum(v != truth[i] for i, v in r.labels.items())
                          for r in runs if r.name == name] for name in RUNS}
    firsts = [r.first_reviews[:TOP] for r in runs if r.name == "review"]
    clean, noisy, reviewed = (_mean(final[n]) for n in RUNS)
    gap = clean - noisy
    tail_clean, tail_noisy, tail_review = (_mean(tail[n]) for n in RUNS)
    tail_gap = tail_clean - tail_noisy
    summary = {
        "dataset": str(args.dataset), "items": len(examples),
        "positives": sum(truth.values()), "seeds": args.seeds, "budget": args.budget,
        "step": args.step, "error_rate": args.error_rate, "review_share": args.review_share,
        "final_f1": final, "mean_final_f1": {"clean": clean, "noisy": noisy,
                                             "review": reviewed},
        "gap": gap, "recovered": reviewed - noisy,
        "recovered_share": (reviewed - noisy) / gap if gap > 0 else None,
        "tail_f1": tail, "tail_gap": tail_gap, "tail_recovered": tail_review - tail_noisy,
        "tail_recovered_share": ((tail_review - tail_noisy) / tail_gap
                                 if tail_gap > 0 else None),
        "first_reviews": [{"served": len(f), "real_errors": sum(f)} for f in firsts],
        "top_suspects": suspects, "errors_in_force": errors_left,
        "review_counts": [r.counts for r in runs if r.name == "review"],
    }
    by_run = curves.curves_by_run([{**r, "strategy": r["run"]} for r in rows])
    title = (f"{len(examples)} street tiles, {args.error_rate:.0%} annotator error, "
             f"review share {args.review_share:g}")
    curves.plot(by_run, [OUT / "f1.png", OUT / "f1.svg"], title)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [f"# Label errors and review\n\n{title}; {args.seeds} seed(s), "
             f"{args.budget} answers, a model every {args.step}.\n",
             f"| run | final F1 by seed | mean | mean of the last {TAIL} models | "
             "label errors in force at the end |", "|---|---|---:|---:|---|"]
    for name in RUNS:
        lines.append(f"| {name} | {', '.join(f'{v:.3f}' for v in final[name])} | "
                     f"{_mean(final[name]):.3f} | {_mean(tail[name]):.3f} | "
                     f"{', '.join(str(v) for v in errors_left[name])} |")
    for what, opened, closed, share in (
            ("final F1", gap, reviewed - noisy, summary["recovered_share"]),
            (f"mean of the last {TAIL} models", tail_gap, tail_review - tail_noisy,
             summary["tail_recovered_share"])):
        lines.append(f"\n{what}: gap opened by the errors {opened:.3f}, closed by the "
                     f"review {closed:.3f}" + (f" ({share:.0%})" if share is not None else ""))
    for k, f in enumerate(firsts):
        lines.append(f"\nSeed {k}: of the first {len(f)} items served for review, "
                     f"{sum(f)} were real errors.")
    for k, s in enumerate(suspects):
        lines.append(f"\nSeed {k}, noisy run's {s['labels']} final labels "
                     f"({s['errors']} wrong): {s['flagged']} flagged; of the {s['top']} most "
                     f"suspicious, {s['top_errors']} are real errors.")
    for k, c in enumerate(summary["review_counts"]):
        lines.append(f"\nSeed {k}, review run: {c}")
    (OUT / "summary.md").write_text("\n".join(lines) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.label_errors",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    p.add_argument("--limit", type=int, default=0, help="stratified subset (0: all)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=1500, help="answers per run")
    p.add_argument("--step", type=int, default=50, help="answers between models")
    p.add_argument("--error-rate", type=float, default=0.05)
    p.add_argument("--review-share", type=float, default=Config().review_share,
                   help="TRAINER_REVIEW_SHARE of the review run (default: the trainer's)")
    p.add_argument("--report", action="store_true",
                   help="only write the report again from the last run's runs.json")
    args = p.parse_args(argv)
    missing = stack.missing_modules("feature_service", "trainer_service")
    if missing:
        print(f"cannot run: {', '.join(missing)} not built", file=sys.stderr)
        return 1
    examples = read_labelled(args.dataset)
    if args.limit:
        examples = stratified_subset(examples, args.limit)
    started = time.monotonic()
    if args.report:
        saved = json.loads((OUT / "runs.json").read_text())
        report(args, examples, [Run(**r) for r in saved["runs"]], saved["suspects"])
    else:
        asyncio.run(measure(args, examples))
    print((OUT / "summary.md").read_text())
    print(f"written to {OUT} in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
