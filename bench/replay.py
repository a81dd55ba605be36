"""The simulated annotator: leases items from a real trainer over gRPC, answers from the
dataset's labels (wrong at a configurable rate), and records after every `step` labels
the model's metrics on the held-out evaluation split, its F1 over every pool item it never
trained on (from the trainer's own predictions export, scored with the dataset's labels:
a far larger sample than the evaluation split, of what the live estimate describes), its
live estimate and the forecast. Every answer counts as a label: training, audit and gold
alike."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from bench.progress import advance, bar
from hitl.channels import open_channel

ANNOTATOR = "simulated-annotator"
METRICS = ("f1", "precision", "recall", "roc_auc", "average_precision", "threshold")
ROW_FIELDS = ("strategy", "seed", "labels", "training", "audit", "gold", "repeats", *METRICS,
              "positives_labelled", "eval_positives", "eval_negatives", "pool_f1",
              "pool_positives", "model_version",
              "estimate_f1", "estimate_low", "estimate_high", "estimate_labels",
              "forecast_labels", "forecast_low", "forecast_high", "forecast_reached",
              "seconds")


def _pb():  # type: ignore[no-untyped-def]
    # Imported late so that `--help` works before `make protos`.
    from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
    return common_pb2, trainer_pb2, trainer_pb2_grpc


def answer(truth: bool, error_rate: float, rng: random.Random) -> bool:
    """The simulated annotator: the dataset's label, flipped with probability error_rate."""
    return (not truth) if rng.random() < error_rate else truth


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
        """Until the dataset is loaded and every item is embedded, with a progress bar."""
        deadline = time.monotonic() + timeout_s
        progress = None
        while True:
            s = await self.status()
            if s.loading.state == self.pb.LOADING_STATE_FAILED:
                raise RuntimeError(f"trainer failed to load the dataset: {s.loading.message}")
            if s.loading.state == self.pb.LOADING_STATE_READY and s.counts.items > 0:
                progress = progress or bar(title, int(s.counts.pool))
                eta = s.extraction.eta_seconds
                advance(progress, int(s.counts.embedded), f"eta {eta:.0f}s" if eta >= 0 else "")
                if s.counts.embedded >= s.counts.pool and s.extraction.pending == 0:
                    progress.close()
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

    async def pool_decisions(self, version: str) -> dict[str, bool]:
        """The decision of model `version` on every embedded pool item."""
        out: dict[str, bool] = {}
        async for batch in self.stub.ExportPredictions(self.pb.ExportPredictionsRequest()):
            if batch.model_version != version:
                raise RuntimeError(f"predictions of {batch.model_version}, not {version}")
            for item_id, p, split in zip(batch.item_ids, batch.probabilities, batch.splits,
                                         strict=True):
                if split == self.pb.SPLIT_POOL:
                    out[item_id] = p >= batch.threshold
        return out


def pool_f1(decisions: dict[str, bool], truth: dict[str, bool], trained: set[str]
            ) -> tuple[float, int]:
    """F1 and positives over the pool items that never trained the model."""
    tp = fp = fn = 0
    for item_id, decided in decisions.items():
        if item_id in trained:
            continue
        actual = truth[item_id]
        tp += decided and actual
        fp += decided and not actual
        fn += actual and not decided
    return (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0), tp + fn


@dataclass
class RunResult:
    strategy: str
    seed: int
    rows: list[dict] = field(default_factory=list)
    served: Counter = field(default_factory=Counter)


@dataclass
class Tally:
    training: int = 0
    audit: int = 0
    gold: int = 0
    repeats: int = 0  # the annotator's own earlier items again (rechecks), and reviews
    positives: int = 0

    @property
    def labels(self) -> int:
        return self.training + self.audit + self.gold + self.repeats

    def count(self, pb, item, positive: bool) -> None:  # type: ignore[no-untyped-def]
        if item.strategy == pb.STRATEGY_GOLD:
            self.gold += 1
        elif item.strategy == pb.STRATEGY_AUDIT:
            self.audit += 1
        elif item.strategy in (pb.STRATEGY_RECHECK, pb.STRATEGY_REVIEW):
            self.repeats += 1
        else:
            self.training += 1
            self.positives += positive


def metrics_row(reply, status, strategy: str, seed: int, tally: Tally,  # type: ignore[no-untyped-def]
                seconds: float, pool: tuple[float, int] | None = None) -> dict:
    m, e, f = reply.model.evaluation, reply.model.estimate, status.forecast
    has_estimate, has_forecast = reply.model.HasField("estimate"), status.HasField("forecast")
    return {"strategy": strategy, "seed": seed, "labels": tally.labels,
            "training": tally.training, "audit": tally.audit, "gold": tally.gold,
            "repeats": tally.repeats,
            **{k: round(getattr(m, k), 6) for k in METRICS},
            "positives_labelled": tally.positives, "eval_positives": m.positives,
            "eval_negatives": m.negatives,
            "pool_f1": round(pool[0], 6) if pool else "", "pool_positives": pool[1] if pool else "",
            "model_version": reply.model.version,
            "estimate_f1": round(e.f1, 6) if has_estimate else "",
            "estimate_low": round(e.f1_low, 6) if has_estimate else "",
            "estimate_high": round(e.f1_high, 6) if has_estimate else "",
            "estimate_labels": e.labels if has_estimate else "",
            "forecast_labels": round(f.labels, 1) if has_forecast else "",
            "forecast_low": round(f.low, 1) if has_forecast else "",
            "forecast_high": round(f.high, 1) if has_forecast else "",
            "forecast_reached": int(f.reached) if has_forecast else "",
            "seconds": round(seconds, 2)}


async def replay(trainer: TrainerClient, truth: dict[str, bool], strategy: str, seed: int,
                 budget: int, step: int, error_rate: float) -> RunResult:
    """Answers what the trainer asks for until `budget` labels, retraining and recording
    after every `step` of them."""
    rng = random.Random(f"annotator-{seed}")
    result = RunResult(strategy, seed)
    tally = Tally()
    next_mark = step
    started = time.monotonic()
    progress = bar(f"{strategy} seed {seed}", budget)
    pb = trainer.pb
    trained: set[str] = set()  # items whose labels may train (every answer but audits)
    while tally.labels < budget:
        items = await trainer.lease(min(next_mark - tally.labels, 50))
        if not items:
            break  # the pool is exhausted
        for item in items:
            if item.id not in truth:
                raise RuntimeError(f"trainer served item {item.id!r}, not in the dataset")
            positive = answer(truth[item.id], error_rate, rng)
            await trainer.annotate(item.id, positive)
            result.served[pb.Strategy.Name(item.strategy)] += 1
            tally.count(pb, item, positive)
            if item.strategy != pb.STRATEGY_AUDIT:
                trained.add(item.id)
        if tally.labels >= next_mark or tally.labels >= budget:
            reply = await trainer.retrain()
            if reply.HasField("model"):
                status = await trainer.status()
                decisions = await trainer.pool_decisions(reply.model.version)
                result.rows.append(metrics_row(
                    reply, status, strategy, seed, tally, time.monotonic() - started,
                    pool_f1(decisions, truth, trained)))
            f1 = result.rows[-1]["f1"] if result.rows else float("nan")
            advance(progress, min(tally.labels, budget), f"F1 {f1:.3f}")
            next_mark = tally.labels - tally.labels % step + step
    progress.close()
    return result


async def full_pool(trainer: TrainerClient, truth: dict[str, bool], seed: int) -> dict:
    """The supervised ceiling: every item the trainer serves annotated with its true
    label, then one model."""
    pool = int((await trainer.status()).counts.pool)
    tally = Tally()
    started = time.monotonic()
    progress = bar(f"ceiling seed {seed}", pool)
    empty = 0
    while empty < 3:
        items = await trainer.lease(50)
        empty = 0 if items else empty + 1
        for item in items:
            await trainer.annotate(item.id, truth[item.id])
            tally.count(trainer.pb, item, truth[item.id])
        advance(progress, min(tally.labels, pool))
    progress.close()
    reply = await trainer.retrain()
    return metrics_row(reply, await trainer.status(), "full-pool", seed, tally,
                       time.monotonic() - started)
