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
import hashlib
import json
import shutil
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench import progress, stack
from bench.dataset import Example, read_labelled, stratified_subset, write_manifest
from bench.label_errors_report import RUNS, TOP, Run, report
from hitl.channels import open_channel
from trainer_service.config import Config

ROOT = stack.ROOT
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "streetview-tiles" / "labels.csv"
CACHE = ROOT / ".run" / "sim-cache"
OUT = ROOT / "artifacts" / "label-errors"
ANNOTATORS = ("sim-a", "sim-b", "sim-c")
BATCH = 5
PAUSE_S = 1.0


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
    bar = progress.bar(f"{run.name} seed {run.seed}", budget)
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
                    progress.advance(bar, answers, f"F1 {m.f1:.3f}")
                next_mark += step
        counts = (await stub.GetStatus(trainer_pb2.GetStatusRequest())).status.counts
        run.counts = {k: getattr(counts, k) for k in ("reviewed", "corrected", "contested")}
    finally:
        await channel.close()
    run.labels = {i: m for i, a in given.items() if (m := majority(a)) is not None}
    progress.advance(bar, answers, f"F1 {run.curve[-1]['f1']:.3f}" if run.curve else "no model")
    bar.close()
    return run


def embed(feature_addr: str, examples: list[Example], task: Any = None
          ) -> dict[str, np.ndarray]:
    """Every example's vector from the feature service (its cache, after the runs): as
    served, or with a `task` (trainer_service.features.extraction.Task) that task's, with
    the evidence of its detector class."""
    import grpc

    from hitl.v1 import feature_pb2, feature_pb2_grpc
    from trainer_service.features.calls import embedded
    from trainer_service.features.task_evidence import extractor_key

    out: dict[str, np.ndarray] = {}
    with grpc.insecure_channel(feature_addr) as channel:
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        for start in range(0, len(examples), 64):
            refs = [feature_pb2.ImageRef(id=e.id, data=Path(e.location).read_bytes())
                    for e in examples[start:start + 64]]
            reply = stub.Embed(feature_pb2.EmbedRequest(
                images=refs, include_class_evidence=task is not None), timeout=600)
            extractor = extractor_key(reply.extractor, task) if task is not None else None
            for r in reply.results:
                out[r.id] = (np.frombuffer(r.features.vector, "<f4") if extractor is None
                             else embedded(r, extractor).vector)
    return out


def top_suspects(vectors: dict[str, np.ndarray], labels: dict[str, int],
                 truth: dict[str, int], seed: int) -> dict:
    """The trainer's own ranking (trainer_service.annotators.label_errors) on the noisy run's labels
    in force: how many of the most suspicious are real errors."""
    from trainer_service.annotators.label_errors import suspects

    ids = sorted(labels)
    x = np.stack([vectors[i] for i in ids])
    y = np.asarray([labels[i] for i in ids])
    found = suspects(x, y, seed)
    top = [ids[row] for row, _ in found[:TOP]]
    errors = sum(labels[i] != truth[i] for i in ids)
    return {"labels": len(ids), "errors": errors, "flagged": len(found), "top": len(top),
            "top_errors": sum(labels[i] != truth[i] for i in top)}


async def measure(args: argparse.Namespace, examples: list[Example]) -> dict:
    work = args.cache / "label-errors"
    manifest = write_manifest(examples, work / "manifest.csv")
    truth = {e.id: int(e.label) for e in examples}
    feature = stack.feature_service(work, args.cache / "features-lite").start()
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
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs.json").write_text(json.dumps(
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
        await stack.wait_for_trainer(service.address, stack.pool_embedded, "embed its pool",
                                     3600)
        if job is not None:
            await job(service.address)
    finally:
        service.stop()
        if keep is not None and service.popen is not None and service.popen.returncode == 0:
            shutil.copytree(data, keep)
        shutil.rmtree(data, ignore_errors=True)


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
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--cache", type=Path, default=CACHE,
                   help="persistent feature cache and scratch folder (the simulator's)")
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
        saved = json.loads((args.out / "runs.json").read_text())
        report(args, examples, [Run(**r) for r in saved["runs"]], saved["suspects"])
    else:
        asyncio.run(measure(args, examples))
    print((args.out / "summary.md").read_text())
    print(f"written to {args.out} in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
