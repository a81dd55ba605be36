"""Active-learning simulator: replays a labelled dataset through the real feature and
trainer services over gRPC. A simulated annotator answers every item the trainer serves
from the dataset's labels; after every `step` labels the simulator records the model's
F1 on an evaluation split the trainer never serves, its live estimate and the forecast.

Every label the annotator gives is counted (training, audit and gold answers). In the
default mode the dataset is treated as unlabelled: its labels only answer for the
annotator and score the evaluation split. `--mode verified` gives the trainer a
validation split with its labels, as a dataset that ships verified labels does (Open
Images validation): those labels are free, and that mode is reported apart.

    python -m bench.simulate                          # street tiles, 3 seeds
    python -m bench.simulate --half confirm           # file names starting 5-9
    python -m bench.simulate --positive-class Hydrant # another question of the tiles
    python -m bench.simulate --dataset my.csv --budget 300 --seeds 1
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import sim_report, stack
from bench.dataset import DatasetError, Example, read_labelled, stratified_subset, write_manifest
from bench.questions import guiding_class, task_env
from bench.replay import TrainerClient, full_pool, replay
from tools.supervisor import ServiceProcess

ROOT = stack.ROOT
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "streetview-tiles" / "labels.csv"
DEFAULT_OUT = ROOT / "artifacts" / "simulate"
DEFAULT_CACHE = ROOT / ".run" / "sim-cache"

# Trainer settings that make each strategy; "default" is the trainer's own mix.
STRATEGIES: dict[str, dict[str, str]] = {
    "random": {"TRAINER_MIX": "random=1"},
    "default": {},
    "uncertainty": {"TRAINER_MIX": "uncertain=1"},
    # The earlier default's outlier share, beside the audit: measured, not the default.
    "with-outlier": {"TRAINER_MIX": "gold=0.1,audit=0.1,random=0.1,uncertain=0.6,outlier=0.1"},
    # The default without its random share: the audit alone keeps a random sample.
    "no-random": {"TRAINER_MIX": "gold=0.1,audit=0.1,uncertain=0.8"},
}
# The shared tiles split by the first character of the file name: tune on one half,
# confirm on the other.
HALVES = {"tune": "01234", "confirm": "56789"}
# Half of the items are the yardstick. A fifth of a half (about 730 tiles, 54 bicycles)
# gives an F1 whose own spread between splits (sd 0.034, `bench.split_noise`) is a third
# of the live interval's width, so the check of that interval would mostly measure the
# yardstick; half the items (about 130 bicycles) cut that spread to about 0.02, and the
# other half still leaves the annotator thousands of items for a budget of hundreds.
EVALUATION_FRACTION = 0.5
MODES = {
    "unlabelled": {"TRAINER_VALIDATION_FRACTION": "0"},
    "verified": {"TRAINER_VALIDATION_FRACTION": "0.2"},
}


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
    mode: str = "unlabelled"
    evaluation_fraction: float = EVALUATION_FRACTION
    half: str = "all"
    positive_class: str | None = None
    detector_class: str = "auto"


def trainer_env(plan: Plan, strategy: str, seed: int) -> dict[str, str]:
    return {**STRATEGIES[strategy], **MODES[plan.mode], "TRAINER_SEED": str(seed),
            "TRAINER_EVALUATION_FRACTION": str(plan.evaluation_fraction),
            **task_env(plan.positive_class, plan.detector_class)}


def half_of(examples: list[Example], half: str) -> list[Example]:
    if half == "all":
        return examples
    first = HALVES[half]
    return [e for e in examples if Path(e.location).name[:1] in first]


async def _with_trainer(plan: Plan, feature: ServiceProcess, manifest: Path, work: Path,
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
    """Where the trainer state with every item's features and no label is kept, by
    manifest and extractor: made once, copied for every run (the splits are made again at
    every start, from the seed; the features do not depend on them)."""
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
    served: dict[str, Counter] = {}
    peaks: dict[str, float] = {}
    template = template_dir(plan, manifest)
    try:
        feature.wait_healthy()
        guide = guiding_class(feature.address, plan.positive_class, plan.detector_class)
        if not template.exists():
            # The one slow step: every image through the feature service, once.
            await _with_trainer(plan, feature, manifest, work, "trainer-warm-up",
                                trainer_env(plan, "default", 0), _nothing, keep=template)
        for seed in plan.seeds:
            for strategy in plan.strategies:
                result, service = await _with_trainer(
                    plan, feature, manifest, work, f"trainer-{strategy}-{seed}",
                    trainer_env(plan, strategy, seed),
                    lambda t, s=strategy, sd=seed: replay(t, truth, s, sd, plan.budget,
                                                          plan.step, plan.error_rate),
                    template=template)
                rows.extend(result.rows)
                served.setdefault(strategy, Counter()).update(result.served)
                peaks["trainer"] = max(peaks.get("trainer", 0.0), service.peak_mib or 0.0)
            if plan.ceiling:
                row, _ = await _with_trainer(
                    plan, feature, manifest, work, f"trainer-ceiling-{seed}",
                    trainer_env(plan, "random", seed),
                    lambda t, sd=seed: full_pool(t, truth, sd), template=template)
                ceilings.append(row)
    finally:
        feature.stop()
    peaks["feature"] = feature.peak_mib or 0.0
    positives = sum(e.label for e in plan.examples)
    name = plan.dataset.parent.name or plan.dataset.name
    if plan.positive_class is not None:
        name += f", {plan.positive_class}"
    title = (f"{name}{'' if plan.half == 'all' else f' ({plan.half} half)'}: "
             f"{len(plan.examples)} items, {positives / len(plan.examples):.1%} positive, "
             f"{plan.mode}, error rate {plan.error_rate:g}")
    meta = {"title": title, "dataset": str(plan.dataset), "half": plan.half,
            "strategies": plan.strategies, "positive_class": plan.positive_class,
            "detector_class": guide,
            "items": len(plan.examples), "positives": positives,
            "error_rate": plan.error_rate, "extractor": plan.extractor,
            "served": {k: dict(v) for k, v in served.items()}, "peak_rss_mib": peaks}
    report = sim_report.Report(title, plan.seeds, plan.budget, plan.step, plan.mode, meta)
    return sim_report.write(plan.out, report, rows, ceilings)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.simulate",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET,
                   help="labelled CSV: a manifest (id,location,label) or filename,label; "
                        "a folder means its labels.csv")
    p.add_argument("--half", choices=["all", *HALVES], default="all",
                   help="only items whose file name starts with 0-4 (tune) or 5-9 (confirm)")
    p.add_argument("--positive-class", default=None,
                   help="ask 'is it this?' of the dataset's source_class column (the tiles: "
                        "Bicycle, Bus, Car, Crosswalk, Hydrant, Traffic Light, ...) instead "
                        "of its label column")
    p.add_argument("--detector-class", default="auto",
                   help="the detector class that guides the task (TRAINER_DETECTOR_CLASS): "
                        "auto (the one named like the positive class, if any), a class "
                        "name or Open Images id, or none")
    p.add_argument("--limit", type=int, default=0,
                   help="use a stratified subset of this many items (0: all)")
    p.add_argument("--mode", choices=list(MODES), default="unlabelled",
                   help="unlabelled: the trainer knows no label; verified: it is given a "
                        "validation split, whose labels are free")
    p.add_argument("--strategies", default="random,default,uncertainty",
                   help=f"comma-separated, from {', '.join(STRATEGIES)}")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    p.add_argument("--budget", type=int, default=300, help="labels per run, all counted")
    p.add_argument("--step", type=int, default=5, help="labels between models")
    p.add_argument("--evaluation-fraction", type=float, default=EVALUATION_FRACTION,
                   help="share of the labelled items held out for evaluation")
    p.add_argument("--error-rate", type=float, default=0.0,
                   help="probability that the simulated annotator answers wrongly")
    p.add_argument("--no-ceiling", action="store_true",
                   help="skip the full-pool supervised ceiling")
    p.add_argument("--extractor", default="lite", help="feature extractor of the service")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help="persistent feature cache and scratch folder")
    p.add_argument("--replot", action="store_true",
                   help="only rewrite the tables and chart from the CSV of an earlier run")
    p.add_argument("--docs", type=Path, default=None,
                   help="also copy the chart and the summary into this folder")
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
    if not 0 < args.evaluation_fraction < 0.8:
        raise SystemExit("--evaluation-fraction must be in (0, 0.8)")
    try:
        examples = half_of(read_labelled(args.dataset, args.positive_class), args.half)
    except DatasetError as exc:
        raise SystemExit(f"dataset: {exc}") from None
    if not examples:
        raise SystemExit(f"no item of {args.dataset} is in the {args.half} half")
    if args.limit:
        examples = stratified_subset(examples, args.limit)
    return Plan(args.dataset, examples, strategies, list(range(args.seeds)), args.budget,
                args.step, args.error_rate, not args.no_ceiling, args.out, args.cache,
                args.extractor, args.mode, args.evaluation_fraction, args.half,
                args.positive_class, args.detector_class)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = stack.missing_modules("feature_service", "trainer_service")
    if missing:
        print(f"cannot simulate: {', '.join(missing)} not built in this checkout",
              file=sys.stderr)
        return 1
    started = time.monotonic()
    run = (lambda: sim_report.replot(args.out)) if args.replot else (
        lambda: asyncio.run(simulate(plan_from(args))))
    summary = run()
    print((args.out / "summary.md").read_text())
    if args.docs is not None:
        args.docs.mkdir(parents=True, exist_ok=True)
        for name, target in (("f1.png", "simulate-f1.png"), ("f1.svg", "simulate-f1.svg"),
                             ("summary.md", "simulate-summary.md")):
            shutil.copyfile(args.out / name, args.docs / target)
    print(f"written to {args.out} in {time.monotonic() - started:.0f}s "
          f"(ceiling F1: {summary['ceiling_f1']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
