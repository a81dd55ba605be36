"""The feature service with its real worker processes (spawned, each building its own
extractor) on a real port: the CPU path (the workers run the models), the GPU path run on
the CPU (the workers decode, the service process runs the models), the settings measured
at start, and a worker killed mid-service."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from feature_service.server import SERVICE_NAME, build_service
from hitl.channels import open_channel
from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.feature.conftest import test_config as feature_config
from tests.feature.helpers import TinyBuilder, TinyExtractor, encode, gradient
from tests.feature.test_service import OK, by_data, outcome, vector_of

E = feature_pb2


@pytest.fixture
async def start(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Starts services whose worker processes build TinyExtractor; stops them all."""
    started = []

    async def go(**overrides: object) -> feature_pb2_grpc.FeatureServiceStub:
        config = feature_config(tmp_path / str(len(started)), **overrides)
        service = build_service(config, builder=TinyBuilder(delay_s=0.01))
        await service.start()
        await asyncio.wait_for(service.wait_ready(), 120)
        channel = open_channel(f"127.0.0.1:{service.port}", SERVICE_NAME)
        started.append((service, channel))
        return feature_pb2_grpc.FeatureServiceStub(channel)

    yield go
    for service, channel in started:
        await channel.close()
        await service.stop(0)


def _images(seed: int, count: int) -> list[tuple[bytes, np.ndarray]]:
    expected = TinyExtractor()
    out = []
    for k in range(count):
        image = gradient((30 + k, 20), seed=seed + k)
        out.append((encode(image, "PNG"), expected.expected(image)))
    return out


async def _embed_and_check(stub: feature_pb2_grpc.FeatureServiceStub, seed: int) -> None:
    images = _images(seed, 24)
    replies = await asyncio.gather(*(
        stub.Embed(E.EmbedRequest(images=[by_data(data) for data, _ in images[k:k + 6]]))
        for k in range(0, 24, 6)))
    results = [r for reply in replies for r in reply.results]
    for result, (_, expected) in zip(results, images, strict=True):
        np.testing.assert_allclose(vector_of(result), expected, rtol=1e-6)


@pytest.mark.parametrize("inference", ["workers", "service"])
async def test_worker_processes_compute_what_the_extractor_computes(start, inference: str
                                                                    ) -> None:
    stub = await start(inference=inference, max_batch=0, decode_workers=0)
    settings = (await stub.Describe(E.DescribeRequest())).settings
    assert settings.inference == inference and settings.workers >= 1
    await _embed_and_check(stub, seed=100)


@pytest.mark.parametrize("inference", ["workers", "service"])
async def test_settings_are_measured_at_start_and_given_ones_are_kept(start, inference: str
                                                                      ) -> None:
    stub = await start(inference=inference, calibration_s=3.0, max_batch=0, decode_workers=0,
                       precision="auto")
    settings = (await stub.Describe(E.DescribeRequest())).settings
    stages = {row.stage for row in settings.calibration}
    assert {"precision, layout", "batch"} <= stages
    # The slower way of computing (TinyBuilder's "bfloat16" sleeps 20 times as long)
    # loses, and its loss is in the table.
    assert settings.precision == "float32" and settings.sources["precision"] == "measured"
    assert any(row.images_per_second > 0 and "bfloat16" in row.candidate
               for row in settings.calibration)
    assert [row.chosen for row in settings.calibration if row.stage == "batch"].count(True) == 1
    if inference == "service":
        assert "decoding workers" in stages
    else:
        assert "workers x threads" in stages
    await _embed_and_check(stub, seed=200)

    given = await start(inference=inference, calibration_s=3.0, max_batch=3, decode_workers=1,
                        precision="float32", threads=1)
    settings = (await given.Describe(E.DescribeRequest())).settings
    assert (settings.max_batch, settings.workers, settings.precision) == (3, 1, "float32")
    assert settings.sources["max_batch"] == settings.sources["workers"] == "given"
    assert not [row for row in settings.calibration if row.stage == "batch"]


async def test_a_killed_worker_is_replaced_and_the_service_keeps_serving(start) -> None:
    stub = await start(decode_workers=2, max_batch=4)
    await _embed_and_check(stub, seed=300)
    workers = [p for p in multiprocessing.active_children() if p.name == "feature-worker"]
    assert len(workers) >= 2
    os.kill(workers[0].pid, signal.SIGKILL)  # type: ignore[arg-type]
    # A call meeting the dead worker fails its images with a retryable INTERNAL error;
    # the worker is replaced and every later call is whole.
    outcomes = set()
    for seed in range(400, 480, 8):
        reply = await stub.Embed(E.EmbedRequest(images=[
            by_data(encode(gradient((25, 25), seed=seed + k), "PNG")) for k in range(8)]))
        for result in reply.results:
            outcomes.add(outcome(result))
            if outcome(result) != OK:
                assert result.error.retryable
    assert outcomes <= {OK, "ERROR_KIND_INTERNAL"}
    await _embed_and_check(stub, seed=500)
    alive = [p for p in multiprocessing.active_children() if p.name == "feature-worker"]
    assert len([p for p in alive if p.is_alive()]) >= 2


async def _stream(stub: feature_pb2_grpc.FeatureServiceStub) -> AsyncIterator[list[str]]:
    async def messages() -> AsyncIterator[feature_pb2.EmbedStreamRequest]:
        for seed in range(600, 640, 8):
            yield E.EmbedStreamRequest(images=[
                by_data(encode(gradient((22, 22), seed=seed + k), "PNG")) for k in range(8)])
    async for reply in stub.EmbedStream(messages()):
        yield [outcome(r) for r in reply.results]


async def test_a_stream_through_worker_processes_returns_every_image(start) -> None:
    stub = await start(inference="workers", max_batch=4)
    outcomes = [o async for batch in _stream(stub) for o in batch]
    assert outcomes == [OK] * 40


async def test_workers_run_at_the_lower_cpu_priority_and_the_service_does_not(start) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    stub = await start(inference="workers", decode_workers=2, worker_nice=7)
    await _embed_and_check(stub, seed=700)
    workers = [p for p in multiprocessing.active_children()
               if p.name == "feature-worker" and p.is_alive()]
    assert len(workers) >= 2
    # The workers' bulk work yields the cores to the service's own requests (health,
    # Describe, the gateway and trainer beside it); a priority is never raised.
    assert {os.getpriority(os.PRIO_PROCESS, p.pid) for p in workers} == {max(own, 7)}
    assert os.getpriority(os.PRIO_PROCESS, 0) == own


def test_lowering_a_threads_priority_leaves_the_others() -> None:
    import threading

    from feature_service.jobs import lower_priority

    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def lowered() -> None:
        lower_priority(min(own + 3, 19))
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        lower_priority(own)  # never raised back
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()
    assert seen == [min(own + 3, 19)] * 2
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own


# ProcessWorkers on their own: each worker process holds its next job while it runs one.

def _embed_job(images: list[tuple[bytes, np.ndarray]]):  # type: ignore[no-untyped-def]
    from feature_service.extractors.base import Settings
    from feature_service.jobs import Job

    return Job("embed", Settings(), tuple(data for data, _ in images))


@pytest.fixture
async def one_worker():  # type: ignore[no-untyped-def]
    from feature_service.jobs import Limits
    from feature_service.workers import ProcessWorkers

    workers = ProcessWorkers(1, TinyBuilder(delay_s=0.02), Limits(max_pixels=10**7))
    await workers.start()
    yield workers
    await workers.close()


async def test_jobs_queued_in_a_worker_each_get_their_own_answers(one_worker) -> None:
    from feature_service.workers import DEPTH

    assert one_worker.slots == DEPTH >= 2
    jobs = [_images(1000 + 10 * k, 3) for k in range(12)]
    answers = await asyncio.gather(*(one_worker.run(_embed_job(j)) for j in jobs))
    for job, answer in zip(jobs, answers, strict=True):
        for (_, expected), vector in zip(job, answer, strict=True):
            np.testing.assert_allclose(vector, expected, rtol=1e-6)


async def test_a_killed_worker_fails_every_job_it_held_and_is_replaced(one_worker) -> None:
    from feature_service.extractors.base import Settings
    from feature_service.jobs import Job
    from feature_service.workers import WorkerStopped

    # Two long jobs: one running, one waiting in the worker's pipe.
    held = [asyncio.create_task(one_worker.run(Job("time", Settings(), _blobs(2000), 1, 5.0)))
            for _ in range(2)]
    await asyncio.sleep(1.0)
    (worker,) = [p for p in multiprocessing.active_children()
                 if p.name == "feature-worker" and p.is_alive()]
    os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(*held, return_exceptions=True)
    assert [type(o) for o in outcomes] == [WorkerStopped, WorkerStopped]
    images = _images(2100, 2)
    answer = await one_worker.run(_embed_job(images))
    np.testing.assert_allclose(answer[0], images[0][1], rtol=1e-6)


def _blobs(seed: int) -> tuple[bytes, ...]:
    return tuple(data for data, _ in _images(seed, 1))


async def test_a_small_job_never_waits_behind_a_large_one() -> None:
    from feature_service.extractors.base import Settings
    from feature_service.jobs import Job, Limits
    from feature_service.workers import ProcessWorkers

    workers = ProcessWorkers(2, TinyBuilder(delay_s=0.02), Limits(max_pixels=10**7))
    await workers.start()
    try:
        finished: list[str] = []

        async def run(name: str, job: Job, large: bool) -> None:
            await workers.run(job, large)
            finished.append(name)

        # A large image (5 s of work here) on one process; small jobs after it, two at a
        # time, find the other process (or wait for room there), never the queue behind it.
        large = asyncio.create_task(run("large", Job("time", Settings(), _blobs(3000), 1, 5.0),
                                        True))
        await asyncio.sleep(0.2)
        await asyncio.gather(*(run(f"small {k}", _embed_job(_images(3100 + k, 1)), False)
                               for k in range(6)))
        await large
        assert finished[-1] == "large", finished
    finally:
        await workers.close()


async def test_inference_time_is_what_the_workers_spent(start) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(f"feature_inference_seconds_{name}") or 0.0

    stub = await start(inference="workers", decode_workers=2, max_batch=4)
    count, total = sample("count"), sample("sum")
    await _embed_and_check(stub, seed=800)
    batches = sample("count") - count
    # TinyBuilder sleeps 0.01 s a batch, in each worker; the figure is per batch over the
    # two that run at once, so at least half of that each.
    assert batches >= 6  # 24 images in batches of at most 4
    assert sample("sum") - total >= batches * 0.01 / 2
