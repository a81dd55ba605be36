"""Active-learning simulator: replays a labelled dataset through the real feature and
trainer services over gRPC, with a simulated annotator who answers GetNextItems from the
dataset's labels (wrong at a configurable rate), and records the held-out evaluation
metrics of the trainer's model after every `step` training labels.

    python -m bench.simulate                      # street-view tiles, 3 seeds, 1,500 labels
    python -m bench.simulate --dataset my.csv --budget 300 --seeds 1
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import random
import shutil
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench import curves, stack
from bench.dataset import DatasetError, Example, read_labelled, stratified_subset, write_manifest
from bench.progress import Progress
from hitl.channels import open_channel

ROOT = stack.ROOT
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "streetview-tiles" / "labels.csv"
DEFAULT_OUT = ROOT / "artifacts" / "simulate"
DEFAULT_CACHE = ROOT / ".run" / "sim-cache"
ANNOTATOR = "simulated-annotator"
METRICS = ("f1", "precision", "recall", "roc_auc", "average_precision", "threshold")
CSV_FIELDS = ("strategy", "seed", "labels", "gold", *METRICS, "positives_labelled",
              "eval_positives", "eval_negatives", "model_version", "adopted", "seconds")

# Trainer settings that make each strategy; "default" is the trainer's own mix.
STRATEGIES: dict[str, dict[str, str]] = {
    "random": {"TRAINER_MIX": "random=1"},
    "default": {},
    "uncertainty": {"TRAINER_MIX": "uncertain=1"},
}


def trainer_env(strategy: str, seed: int) -> dict[str, str]:
    # One simulated annotator answers every item once: no rechecks of its own items (they
    # would count as labels and never train); review needs a second annotator anyway.
    return {**STRATEGIES[strategy], "TRAINER_SEED": str(seed), "TRAINER_RECHECK_SHARE": "0"}


def answer(truth: bool, error_rate: float, rng: random.Random) -> bool:
    """The simulated annotator: the dataset's label, flipped with probability error_rate."""
    return (not truth) if rng.random() < error_rate else truth


@dataclass
class RunResult:
    strategy: str
    seed: int
    rows: list[dict] = field(default_factory=list)
    served: Counter = field(default_factory=Counter)


def _pb():
    # Imported late so that `--help` works before `make protos`.
    from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
    return common_pb2, trainer_pb2, trainer_pb2_grpc


class TrainerClient:
    """The simulator's view of one trainer process."""

    def __init__(self, address: str) -> None:
        common_pb2, trainer_pb2, trainer_pb2_grpc = _pb()
        self.common, self.pb = common_pb2, trainer_pb2
        self.channel = open_channel(address, "hitl.v1.TrainerService", default_deadline_s=300)
        self.stub = trainer_pb2_grpc.TrainerServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def status(self):  # type: ignore[no-untyped-def]
        return (await self.stub.GetStatus(self.pb.GetStatusRequest())).status

    async def wait_ready(self, title: str, timeout_s: float = 3600) -> None:
        """Until the dataset is loaded and every pool item is embedded, with a progress bar."""
        deadline = time.monotonic() + timeout_s
        bar: Progress | None = None
        while True:
            s = await self.status()
            if s.loading.state == self.pb.LOADING_STATE_FAILED:
                raise RuntimeError(f"trainer failed to load the dataset: {s.loading.message}")
            loaded = s.loading.state == self.pb.LOADING_STATE_READY
            if loaded and s.counts.pool > 0:
                bar = bar or Progress(title, int(s.counts.pool))
                eta = s.extraction.eta_seconds
                bar.update(int(s.counts.embedded), f"eta {eta:.0f}s" if eta >= 0 else "")
                if s.counts.embedded >= s.counts.pool and s.extraction.pending == 0:
                    bar.close(int(s.counts.embedded), "ready")
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"trainer not ready after {timeout_s:.0f}s "
                                   f"(loading: {s.loading.message!r}, "
                                   f"embedded {s.counts.embedded}/{s.counts.pool})")
            await asyncio.sleep(0.5)

    async def lease(self, count: int):  # type: ignore[no-untyped-def]
        reply = await self.stub.GetNextItems(
            self.pb.GetNextItemsRequest(annotator=ANNOTATOR, count=count))
        return list(reply.items)

    async def annotate(self, item_id: str, positive: bool) -> None:
        label = self.common.LABEL_POSITIVE if positive else self.common.LABEL_NEGATIVE
        reply = await self.stub.AddAnnotation(self.pb.AddAnnotationRequest(
            annotation_id=uuid.uuid4().hex, item_id=item_id, label=label,
            annotator=ANNOTATOR))
        # The evaluation split is only honest if the sampler never shows it.
        if reply.annotation.split == self.pb.SPLIT_EVALUATION:
            raise RuntimeError(f"the trainer served evaluation item {item_id!r}")

    async def retrain(self):  # type: ignore[no-untyped-def]
        return await self.stub.Retrain(self.pb.RetrainRequest())


def _metrics_row(reply, strategy: str, seed: int, labels: int, gold: int,  # type: ignore[no-untyped-def]
                 positives: int, seconds: float) -> dict:
    m = reply.model.evaluation
    return {"strategy": strategy, "seed": seed, "labels": labels, "gold": gold,
            **{k: round(getattr(m, k), 6) for k in METRICS},
            "positives_labelled": positives, "eval_positives": m.positives,
            "eval_negatives": m.negatives, "model_version": reply.model.version,
            "adopted": reply.adopted, "seconds": round(seconds, 2)}


async def replay(trainer: TrainerClient, truth: dict[str, bool], strategy: str, seed: int,
                 budget: int, step: int, error_rate: float) -> RunResult:
    """Annotates what the trainer asks for until `budget` training labels, retraining and
    recording the evaluation metrics after every `step` of them."""
    rng = random.Random(f"annotator-{seed}")
    result = RunResult(strategy, seed)
    labels = gold = positives = 0
    next_mark = step
    started = time.monotonic()
    bar = Progress(f"{strategy} seed {seed}", budget)
    while labels < budget:
        items = await trainer.lease(min(next_mark - labels, 50))
        if not items:
            break  # the pool is exhausted
        for item in items:
            if item.id not in truth:
                raise RuntimeError(f"trainer served item {item.id!r}, not in the dataset")
            positive = answer(truth[item.id], error_rate, rng)
            await trainer.annotate(item.id, positive)
            result.served[trainer.pb.Strategy.Name(item.strategy)] += 1
            if item.strategy == trainer.pb.STRATEGY_GOLD:
                gold += 1
            else:
                labels += 1
                positives += positive
        if labels >= next_mark or labels >= budget:
            reply = await trainer.retrain()
            if reply.HasField("model"):
                result.rows.append(_metrics_row(reply, strategy, seed, labels, gold, positives,
                                                time.monotonic() - started))
            f1 = result.rows[-1]["f1"] if result.rows else float("nan")
            bar.update(labels, f"F1 {f1:.3f}")
            next_mark = labels - labels % step + step
    bar.close(labels, f"F1 {result.rows[-1]['f1']:.3f}" if result.rows else "no model")
    return result


async def full_pool(trainer: TrainerClient, truth: dict[str, bool], seed: int) -> dict:
    """The supervised ceiling: every pool item annotated with its true label, one model."""
    pool = int((await trainer.status()).counts.pool)
    labels = gold = positives = 0
    started = time.monotonic()
    bar = Progress(f"ceiling seed {seed}", pool)
    empty = 0
    while labels < pool and empty < 3:
        items = await trainer.lease(50)
        training = [i for i in items if i.strategy != trainer.pb.STRATEGY_GOLD]
        empty = 0 if training else empty + 1
        for item in items:
            await trainer.annotate(item.id, truth[item.id])
        labels += len(training)
        positives += sum(truth[i.id] for i in training)
        gold += len(items) - len(training)
        bar.update(labels)
    bar.close(labels)
    reply = await trainer.retrain()
    return _metrics_row(reply, "full-pool", seed, labels, gold, positives,
                        time.monotonic() - started)


@dataclass
class Plan:
    dataset: Path
    examples: list[Example]
    strategies: list[str]
    seeds: list[int]
    budget: int
    step: int
    error_rate: float
    ceiling: bool
    out: Path
    cache: Path
    extractor: str = "lite"


async def _with_trainer(plan: Plan, feature: stack.Service, manifest: Path, work: Path,
                        name: str, env: dict[str, str], job,  # type: ignore[no-untyped-def]
                        template: Path | None = None, keep: Path | None = None):
    """Runs `job` against a fresh trainer process. Its data folder starts as a copy of
    `template` (features already extracted) when given; `keep` saves it afterwards."""
    data_dir = work / name
    shutil.rmtree(data_dir, ignore_errors=True)
    if template is not None:
        shutil.copytree(template, data_dir)
    # The whole pool stays embedded and ranked, whatever its size.
    env = {"TRAINER_PREFETCH": str(max(len(plan.examples), 1)), **env}
    service = stack.trainer_service(work, data_dir, feature.address, manifest, env, name=name)
    service.start()
    try:
        service.wait_healthy()
        trainer = TrainerClient(service.address)
        try:
            await trainer.wait_ready(f"{name}: features")
            return await job(trainer), service
        finally:
            await trainer.close()
    finally:
        service.stop()
        if keep is not None and service.popen is not None and service.popen.returncode == 0:
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(data_dir, keep)
        shutil.rmtree(data_dir, ignore_errors=True)


def template_dir(plan: Plan, manifest: Path) -> Path:
    """Where the trainer state with every feature extracted and no label is kept, by
    manifest and extractor: made once, copied for every run."""
    digest = hashlib.sha256(manifest.read_bytes() + plan.extractor.encode()).hexdigest()[:12]
    return plan.cache / f"trainer-template-{digest}"


async def _nothing(trainer: TrainerClient) -> None:
    return None


async def simulate(plan: Plan) -> dict:
    work = plan.cache / "runs"
    manifest = write_manifest(plan.examples, work / "manifest.csv")
    truth = {e.id: e.label for e in plan.examples}
    feature = stack.feature_service(work, plan.cache / f"features-{plan.extractor}",
                                    plan.extractor).start()
    rows: list[dict] = []
    ceilings: list[dict] = []
    served: dict[str, dict[str, int]] = {}
    peaks: dict[str, float] = {}
    template = template_dir(plan, manifest)
    try:
        feature.wait_healthy()
        if not template.exists():
            # The one slow step: every image through the feature service, once.
            await _with_trainer(plan, feature, manifest, work, "trainer-warm-up", {},
                                _nothing, keep=template)
        for seed in plan.seeds:
            for strategy in plan.strategies:
                result, service = await _with_trainer(
                    plan, feature, manifest, work, f"trainer-{strategy}-{seed}",
                    trainer_env(strategy, seed),
                    lambda t, s=strategy, sd=seed: replay(t, truth, s, sd, plan.budget,
                                                          plan.step, plan.error_rate),
                    template=template)
                rows.extend(result.rows)
                for k, v in result.served.items():
                    served.setdefault(strategy, Counter())[k] += v  # type: ignore[index]
                peaks["trainer"] = max(peaks.get("trainer", 0.0), service.peak_mib or 0.0)
            if plan.ceiling:
                row, service = await _with_trainer(
                    plan, feature, manifest, work, f"trainer-ceiling-{seed}",
                    trainer_env("random", seed), lambda t, sd=seed: full_pool(t, truth, sd),
                    template=template)
                ceilings.append(row)
    finally:
        feature.stop()
    peaks["feature"] = feature.peak_mib or 0.0
    return write_outputs(plan, rows, ceilings, served, peaks)


def write_outputs(plan: Plan, rows: list[dict], ceilings: list[dict],
                  served: dict[str, dict[str, int]], peaks: dict[str, float]) -> dict:
    plan.out.mkdir(parents=True, exist_ok=True)
    with (plan.out / "curves.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows + ceilings)
    runs = curves.curves_by_run(rows)
    summaries = curves.summarise(runs, plan.budget)
    ceiling = (sum(r["f1"] for r in ceilings) / len(ceilings)) if ceilings else None
    positives = sum(e.label for e in plan.examples)
    title = (f"{plan.dataset.parent.name or plan.dataset.name}: {len(plan.examples)} items, "
             f"{positives / len(plan.examples):.1%} positive, error rate {plan.error_rate:g}")
    curves.plot(runs, [plan.out / "f1.png", plan.out / "f1.svg"], title, ceiling)
    by_name = {s.strategy: s for s in summaries}
    verdict = None
    if "default" in by_name and "random" in by_name:
        verdict = {f"{lv:g}": ok for lv, ok in
                   curves.beats(by_name["default"], by_name["random"]).items()}
    table = curves.table_markdown(summaries, ceiling)
    text = [f"# Active-learning simulation\n\n{title}; {len(plan.seeds)} seed(s), "
            f"budget {plan.budget} labels, a model every {plan.step}.\n", table]
    if verdict is not None:
        text.append("\nDefault mix reaches each level in fewer labels than random: "
                    + ", ".join(f"F1 {k}: {'yes' if v else 'no'}" for k, v in verdict.items())
                    + "\n")
    text.append("\nItems served, by the trainer's strategy: "
                + "; ".join(f"{s}: " + ", ".join(f"{k.removeprefix('STRATEGY_').lower()} {v}"
                                                  for k, v in sorted(c.items()))
                            for s, c in served.items()) + "\n")
    (plan.out / "summary.md").write_text("".join(text))
    summary = {
        "dataset": str(plan.dataset), "items": len(plan.examples), "positives": positives,
        "seeds": plan.seeds, "budget": plan.budget, "step": plan.step,
        "error_rate": plan.error_rate, "extractor": plan.extractor,
        "strategies": {s.strategy: {
            "labels_to_reach": {f"{lv:g}": list(r.per_seed) for lv, r in s.reach.items()},
            "mean_labels_to_reach": {f"{lv:g}": r.mean for lv, r in s.reach.items()},
            "mean_f1_area": s.area, "final_f1": s.final_f1} for s in summaries},
        "ceiling_f1": ceiling, "ceiling_per_seed": ceilings,
        "default_beats_random": verdict, "served": served, "peak_rss_mib": peaks,
    }
    (plan.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def replot(plan: Plan) -> dict:
    """The outputs again from an earlier run's CSV and summary (new levels, a new chart)."""
    with (plan.out / "curves.csv").open(newline="") as f:
        rows = [{k: (v if k in ("strategy", "model_version", "adopted") else _number(v))
                 for k, v in r.items()} for r in csv.DictReader(f)]
    earlier = json.loads((plan.out / "summary.json").read_text())
    ceilings = [r for r in rows if r["strategy"] == "full-pool"]
    learning = [r for r in rows if r["strategy"] != "full-pool"]
    plan.seeds = sorted({int(r["seed"]) for r in learning})
    return write_outputs(plan, learning, ceilings, earlier["served"], earlier["peak_rss_mib"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.simulate",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET,
                   help="labelled CSV: a manifest (id,location,label) or filename,label; "
                        "a folder means its labels.csv")
    p.add_argument("--limit", type=int, default=0,
                   help="use a stratified subset of this many items (0: all)")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help=f"comma-separated, from {', '.join(STRATEGIES)}")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    p.add_argument("--budget", type=int, default=1500, help="training labels per run")
    p.add_argument("--step", type=int, default=25, help="labels between models")
    p.add_argument("--error-rate", type=float, default=0.0,
                   help="probability that the simulated annotator answers wrongly")
    p.add_argument("--no-ceiling", action="store_true",
                   help="skip the full-pool supervised ceiling")
    p.add_argument("--extractor", default="lite", help="feature extractor of the service")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help="persistent feature cache and scratch folder")
    p.add_argument("--replot", action="store_true",
                   help="only rewrite the table and chart from the CSV of an earlier run")
    p.add_argument("--docs", type=Path, default=None,
                   help="also copy the chart and the table into this folder")
    return p.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise SystemExit(f"unknown strategy {', '.join(unknown)}; "
                         f"choose from {', '.join(STRATEGIES)}")
    if not 0 <= args.error_rate < 0.5:
        raise SystemExit("--error-rate must be in [0, 0.5)")
    if args.step < 1 or args.budget < args.step or args.seeds < 1:
        raise SystemExit("need --seeds >= 1 and --budget >= --step >= 1")
    try:
        examples = read_labelled(args.dataset)
    except DatasetError as exc:
        raise SystemExit(f"dataset: {exc}") from None
    if args.limit:
        examples = stratified_subset(examples, args.limit)
    return Plan(args.dataset, examples, strategies, list(range(args.seeds)), args.budget,
                args.step, args.error_rate, not args.no_ceiling, args.out, args.cache,
                args.extractor)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = stack.missing_modules("feature_service", "trainer_service")
    if missing:
        print(f"cannot simulate: {', '.join(missing)} not built in this checkout",
              file=sys.stderr)
        return 1
    plan = plan_from(args)
    started = time.monotonic()
    summary = replot(plan) if args.replot else asyncio.run(simulate(plan))
    print((plan.out / "summary.md").read_text())
    if args.docs is not None:
        args.docs.mkdir(parents=True, exist_ok=True)
        for name, target in (("f1.png", "simulate-f1.png"), ("f1.svg", "simulate-f1.svg"),
                             ("summary.md", "simulate-summary.md")):
            shutil.copyfile(plan.out / name, args.docs / target)
    print(f"written to {plan.out} in {time.monotonic() - started:.0f}s "
          f"(ceiling F1: {summary['ceiling_f1']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
