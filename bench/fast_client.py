"""A team that labels fast: one client leases 50 items at a time and answers them at
once, 300 answers without ever waiting for a model, through the real feature (lite) and
trainer services; then the live score it is shown. The audits start with the first
answers, so that score rests on a tenth of them, not on the few drawn after the first
model was trained.

    python -m bench.fast_client --half confirm
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, replace

from bench import simulate
from bench.replay import TrainerClient

LEASE = 50


@dataclass(frozen=True)
class FastResult:
    answers: int
    audit_answers: int  # answers to audit items
    estimate_labels: int  # what the live estimate rests on
    f1: float
    low: float
    high: float
    evaluation_f1: float
    seconds: float


async def answer_fast(trainer: TrainerClient, truth: dict[str, bool], answers: int,
                      wait_s: float = 120.0) -> FastResult:
    """Answers `answers` items as fast as they are leased, then waits for the trainer's
    own training (no Retrain call) to show a model with an estimate of them all."""
    started = time.monotonic()
    given = audits = 0
    while given < answers:
        items = await trainer.lease(min(LEASE, answers - given))
        if not items:
            break
        for item in items:
            await trainer.annotate(item.id, truth[item.id])
            audits += item.strategy == trainer.pb.STRATEGY_AUDIT
        given += len(items)
    seconds = time.monotonic() - started
    deadline = time.monotonic() + wait_s
    while True:
        status = await trainer.status()
        estimate = status.model.estimate
        if status.model.HasField("estimate") and estimate.labels >= audits:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"no estimate of {audits} audit answers after {wait_s:.0f}s "
                               f"(it rests on {estimate.labels})")
        await asyncio.sleep(0.5)
    return FastResult(given, audits, estimate.labels, estimate.f1, estimate.f1_low,
                      estimate.f1_high, status.model.evaluation.f1, seconds)


async def run(plan: simulate.Plan, answers: int, seed: int) -> FastResult:
    work = plan.cache / "runs"
    manifest = simulate.write_manifest(plan.examples, work / "manifest.csv")
    truth = {e.id: e.label for e in plan.examples}
    feature = simulate.stack.feature_service(work, plan.cache / f"features-{plan.extractor}",
                                             plan.extractor).start()
    template = simulate.template_dir(plan, manifest)
    try:
        feature.wait_healthy()
        if not template.exists():
            await simulate._with_trainer(plan, feature, manifest, work, "trainer-warm-up",
                                         simulate.trainer_env(plan, "default", 0),
                                         simulate._nothing, keep=template)
        result, _ = await simulate._with_trainer(
            plan, feature, manifest, work, f"trainer-fast-{seed}",
            simulate.trainer_env(plan, "default", seed),
            lambda t: answer_fast(t, truth, answers), template=template)
        return result  # type: ignore[no-any-return]
    finally:
        feature.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fast_client",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--half", choices=["all", *simulate.HALVES], default="confirm")
    p.add_argument("--answers", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--positive-class", default=None)
    p.add_argument("--cache", type=simulate.Path, default=simulate.DEFAULT_CACHE)
    args = p.parse_args(argv)
    plan = simulate.plan_from(simulate.parse_args(
        ["--half", args.half, "--cache", str(args.cache), "--seeds", "1"]
        + (["--positive-class", args.positive_class] if args.positive_class else [])))
    plan = replace(plan, strategies=["default"])
    found = asyncio.run(run(plan, args.answers, args.seed))
    print(f"{found.answers} answers in {found.seconds:.0f}s, {found.audit_answers} of them "
          f"audits; the live F1 {found.f1:.3f} ({found.low:.3f}-{found.high:.3f}) rests on "
          f"{found.estimate_labels}; the evaluation F1 {found.evaluation_f1:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
