"""Load: 50 annotators on the gateway and trainer, and the feature service under a
stream of cached lookups with a burst of cold images. Latencies are reported, not
asserted (they depend on the machine); errors, losses and memory growth are asserted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.dataset import read_labelled
from bench.gateway import percentile
from hitl.channels import open_channel
from hitl.v1 import feature_pb2, feature_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from tests.reliability import report
from tests.reliability import stack as rs
from tests.reliability.annotators import Annotator, Tally
from tests.reliability.fixtures import Shape
from tests.support import TILES

ANNOTATORS = 50
# Memory is "flat" when the last quarter of the run is within this of the first quarter.
RSS_GROWTH_FACTOR = 1.15
RSS_GROWTH_SLACK_MIB = 25.0


def test_50_annotators_on_gateway_and_trainer(tmp_path, shared_feature, shape: Shape):
    seconds = shape.pick(6.0, 60.0)
    # Every tile, so that 60 s of annotating does not run out of items.
    pool = rs.pool_manifest(tmp_path / "pool.csv", shape.pick(5000, 7326))
    trainer = rs.trainer_service(tmp_path, shared_feature.address, pool, TRAINER_PREFETCH="0")
    rs.start(trainer)
    gateway = rs.gateway_service(tmp_path, trainer.address, shared_feature.address)
    rs.start(gateway)
    tally, warm_up = Tally(), Tally()
    base = f"http://127.0.0.1:{gateway.port}"

    # The long form paces annotators like fast people, so that a minute of them does
    # not exhaust the dataset; the short form has them as fast as the services allow.
    think_s = shape.pick(0.05, 0.6)

    def annotate(tally: Tally, seconds: float, annotators: int = ANNOTATORS) -> None:
        until = time.monotonic() + seconds

        async def run() -> None:
            await asyncio.gather(*(
                Annotator(base, f"load-{i}", tally, think_s=think_s).run(
                    lambda: time.monotonic() < until) for i in range(annotators)))

        asyncio.run(run())

    try:
        assert trainer.popen is not None and gateway.popen is not None
        # Warm-up: the first labels and the first model load what stays loaded (training
        # libraries, the feature bank); memory is measured from then on.
        annotate(warm_up, 1.5, annotators=5)
        with rs.channel(trainer.address) as channel:
            trainer_pb2_grpc.TrainerServiceStub(channel).Retrain(
                trainer_pb2.RetrainRequest(), timeout=60)
        with rs.MemorySampler({"trainer": trainer.popen.pid,
                               "gateway": gateway.popen.pid}) as memory:
            annotate(tally, seconds)
        counts = rs.export_counts(trainer.address)
    finally:
        gateway.stop()
        trainer.stop()
    for op, values in (("next-items", tally.next_ms), ("annotate", tally.annotate_ms)):
        report.figure(f"50 annotators {seconds:.0f}s: {op} p50/p99 ms",
                      f"{percentile(values, 50):.0f}/{percentile(values, 99):.0f} "
                      f"(n={len(values)})")
    for name in ("trainer", "gateway"):
        first, last = memory.growth(name)
        report.figure(f"50 annotators: {name} RSS first/last quarter MiB",
                      f"{first:.0f}/{last:.0f}")
        assert last <= first * RSS_GROWTH_FACTOR + RSS_GROWTH_SLACK_MIB, (name, first, last)
    report.fault(report.FaultRun(f"load: 50 annotators for {seconds:.0f}s (no fault)", 0,
                                 len(tally.sent), len(tally.acknowledged),
                                 sum(counts[i] == 1 for i in tally.sent),
                                 sum(counts[i] == 0 for i in tally.acknowledged),
                                 sum(n > 1 for n in counts.values())))
    assert tally.errors == {} and tally.refused == [] and tally.retries == 0
    assert len(tally.annotate_ms) >= ANNOTATORS * 3 and len(tally.next_ms) >= ANNOTATORS
    assert len(tally.sent) + len(warm_up.sent) < 7326 * 0.9, "the pool ran dry: not a load test"
    assert tally.acknowledged == tally.sent
    assert set(counts) == tally.sent | warm_up.acknowledged
    assert all(counts[i] == 1 for i in tally.sent)


def _histogram(samples: dict[str, float], name: str) -> dict[str, float]:
    prefix = f"{name}_bucket{{le=\""
    return {k[len(prefix):-2]: v for k, v in samples.items() if k.startswith(prefix)}


def test_feature_service_under_cached_lookups_and_cold_bursts(shared_feature, shape: Shape):
    """Two bursts of cold images, each under a stream of cached lookups: the second burst
    must not need more memory than the first (the model's buffers are reused)."""
    lookups, cold = shape.pick((2000, 40), (10_000, 250))
    examples = read_labelled(TILES)
    warm = [feature_pb2.ImageRef(id=f"warm-{e.id}", data=Path(e.location).read_bytes())
            for e in examples[:20]]
    bursts = [[feature_pb2.ImageRef(id=f"cold-{e.id}", data=Path(e.location).read_bytes())
               for e in examples[-cold * (n + 1):len(examples) - cold * n]] for n in range(2)]
    metrics_port = int(shared_feature.env["FEATURE_METRICS_PORT"])
    assert shared_feature.popen is not None

    async def burst(stub, refs) -> tuple[list, list, float]:  # type: ignore[no-untyped-def]
        ids = [warm[n % len(warm)].id for n in range(lookups)]
        started = time.perf_counter()
        # Every cold image is its own call, all at once: only batching across callers
        # makes the model see more than one image at a time.
        cold_calls = [stub.Embed(feature_pb2.EmbedRequest(images=[ref])) for ref in refs]
        lookup_calls = [stub.Lookup(feature_pb2.LookupRequest(ids=ids[i:i + 100]))
                        for i in range(0, len(ids), 100)]
        replies = await asyncio.gather(*cold_calls, *lookup_calls)
        return (replies[:len(cold_calls)], replies[len(cold_calls):],
                time.perf_counter() - started)

    async def scenario(memory: rs.MemorySampler) -> list[tuple[list, list, float, float]]:
        channel = open_channel(shared_feature.address, rs.FEATURE, default_deadline_s=600,
                               security=rs.ADMIN)
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        out = []
        try:
            await stub.Embed(feature_pb2.EmbedRequest(images=warm))
            for refs in bursts:
                cold_replies, lookup_replies, seconds = await burst(stub, refs)
                out.append((cold_replies, lookup_replies, seconds,
                            max(memory.samples["feature"])))
            return out
        finally:
            await channel.close()

    before = rs.prometheus(metrics_port)
    start_rss = rs.rss_mib(shared_feature.popen.pid)
    with rs.MemorySampler({"feature": shared_feature.popen.pid}) as memory:
        runs = asyncio.run(scenario(memory))
    after = rs.prometheus(metrics_port)

    batches = (after["feature_batch_size_count"] - before.get("feature_batch_size_count", 0))
    images = after["feature_batch_size_sum"] - before.get("feature_batch_size_sum", 0)
    within_limit = (_histogram(after, "feature_batch_size")["32.0"]
                    - _histogram(before, "feature_batch_size").get("32.0", 0))
    (_, _, first_s, first_peak), (_, _, second_s, second_peak) = runs
    report.figure(f"feature: {cold} cold + {lookups} cached lookups at once, s",
                  f"{first_s:.1f}, then {second_s:.1f}")
    report.figure("feature: images per model batch (mean)", f"{images / max(batches, 1):.1f}")
    report.figure("feature: RSS start / peak after burst 1 / 2, MiB",
                  f"{start_rss:.0f} / {first_peak:.0f} / {second_peak:.0f}")
    for cold_replies, lookup_replies, _, _ in runs:
        cold_results = [r for reply in cold_replies for r in reply.results]
        found = [r for reply in lookup_replies for r in reply.results]
        # Nothing dropped: every cold image has features, every lookup was a hit.
        assert len(cold_results) == cold
        assert all(r.WhichOneof("outcome") == "features" for r in cold_results)
        assert len(found) == lookups
        assert all(r.WhichOneof("outcome") == "features" and r.features.cached for r in found)
    # Batching holds: the bursts share model calls (spread over the worker processes, so
    # two or more images a call on average rather than one each).
    assert images >= 2 * cold and batches <= images / 2, (images, batches)
    assert within_limit == batches
    # Memory bounded: the second burst reuses what the first one needed.
    assert second_peak <= first_peak * 1.05 + 50, (first_peak, second_peak)
