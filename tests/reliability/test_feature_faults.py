"""The feature service fails under the trainer and the gateway: killed during bulk
extraction, one of two replicas killed behind client-side round robin, and stopped with
SIGTERM while calls are in flight."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from hitl.channels import open_channel
from hitl.v1 import common_pb2, feature_pb2, feature_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from tests.reliability import report
from tests.reliability import stack as rs
from tests.reliability.fixtures import Shape
from tools.supervisor import ServiceProcess

BULK_ITEMS = 200


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Iterator[ServiceProcess]:
    """A feature service of this module's own, killed and restarted by its tests (in file
    order: bulk extraction, drain, round robin), with a long grace period."""
    state = tmp_path_factory.mktemp("replica")
    service = rs.feature_service(state, state / "cache", FEATURE_GRACE_S="30")
    rs.start(service)
    yield service
    service.stop()


def _labels_db(data_dir: Path, query: str) -> int:
    """A count from the trainer's own database (read-only, beside the running trainer)."""
    with sqlite3.connect(f"file:{data_dir / 'labels.sqlite3'}?mode=ro", uri=True) as db:
        return int(db.execute(query).fetchone()[0])


def test_feature_service_killed_during_bulk_extraction(tmp_path, replica, shape: Shape):
    items = shape.pick(BULK_ITEMS, 1500)
    manifest = rs.pool_manifest(tmp_path / "pool.csv", items)
    feature = replica
    trainer = rs.trainer_service(tmp_path, feature.address, manifest, TRAINER_EMBED_BATCH="8")
    data_dir = Path(trainer.env["TRAINER_DATA_DIR"])
    rs.start(trainer)
    annotations: list[str] = []
    try:
        status = rs.wait_status(trainer.address, lambda s: s.counts.embedded >= 16,
                                what="extraction under way")
        assert status.extraction.pending > 0, "extraction ended before the kill"
        rs.kill(feature)
        at_kill = rs.trainer_status(trainer.address)
        # The trainer keeps serving annotations while features are away.
        with rs.channel(trainer.address) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            leased = stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
                annotator="outage", count=20), timeout=5).items
            assert len(leased) == 20
            for n, item in enumerate(leased):
                annotation_id = uuid.uuid4().hex
                reply = stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                    annotation_id=annotation_id, item_id=item.id, annotator="outage",
                    label=common_pb2.LABEL_POSITIVE if n % 2 else common_pb2.LABEL_NEGATIVE),
                    timeout=5)
                assert not reply.duplicate
                annotations.append(annotation_id)
        time.sleep(1.0)
        down = rs.trainer_status(trainer.address)
        # Nothing was dropped while the service was away: what was pending still is.
        assert down.counts.embedded + down.extraction.pending >= items
        assert down.counts.embedded <= at_kill.counts.embedded + 8
        rs.start(feature)  # same port, same LMDB cache, killed mid-write
        done = rs.wait_status(trainer.address,
                              lambda s: s.extraction.pending == 0 and s.counts.embedded >= items,
                              timeout=shape.pick(300, 900), what="extraction resumed and done")
        features = _labels_db(data_dir, "SELECT count(*) FROM features")
        distinct = _labels_db(data_dir, "SELECT count(DISTINCT item_id) FROM features")
        failed = _labels_db(data_dir, "SELECT count(*) FROM failed")
        pending = _labels_db(data_dir, "SELECT count(*) FROM pending")
        counts = rs.export_counts(trainer.address)
    finally:
        trainer.stop()
    report.fault(report.FaultRun("feature SIGKILL during bulk extraction", 1, len(annotations),
                                 sum(counts[a] >= 1 for a in annotations),
                                 sum(counts[a] == 1 for a in annotations),
                                 sum(counts[a] == 0 for a in annotations),
                                 sum(counts[a] > 1 for a in annotations)))
    report.figure("bulk extraction: items embedded after the feature kill",
                  f"{done.counts.embedded}/{items} (pending 0, failed {failed})")
    assert done.counts.embedded == items
    assert features == distinct == items and failed == 0 and pending == 0
    assert all(counts[a] == 1 for a in annotations)
    assert (done.counts.labelled_positive + done.counts.labelled_negative
            + done.counts.audit_labels) == len(annotations)


def _tile_refs(tiles: Path, count: int, prefix: str) -> list[feature_pb2.ImageRef]:
    from bench.dataset import read_labelled
    return [feature_pb2.ImageRef(id=f"{prefix}{e.id}", data=Path(e.location).read_bytes())
            for e in read_labelled(tiles)[:count]]


async def _embed_until(stub, refs, stop: asyncio.Event, outcomes: list[str]) -> None:  # type: ignore[no-untyped-def]
    while not stop.is_set():
        try:
            reply = await stub.Embed(feature_pb2.EmbedRequest(images=refs), timeout=20)
            ok = all(r.WhichOneof("outcome") == "features" for r in reply.results)
            outcomes.append("ok" if ok and len(reply.results) == len(refs) else "bad result")
        except grpc.aio.AioRpcError as exc:
            outcomes.append(exc.code().name)


def _started(replica, method: str) -> float:  # type: ignore[no-untyped-def]
    """Calls of `method` the replica has received (grpc_server_started)."""
    samples = rs.prometheus(int(replica.env["FEATURE_METRICS_PORT"]))
    return sum(v for k, v in samples.items()
               if k.startswith("grpc_server_started_total{") and f'"{method}"' in k)


async def _until(done: Callable[[], bool], failure: str, every_s: float) -> None:
    """Waits for `done` (checked every `every_s`), at most 60 s: then fails saying
    `failure`. An event to wait for, not a length of time that a loaded machine outlasts."""
    deadline = time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(every_s)


def test_sigterm_drains_calls_in_flight_within_the_grace_period(replica, tiles, shape: Shape):
    grace = float(replica.env["FEATURE_GRACE_S"])
    calls = shape.pick(6, 12)
    # Enough work per call (bypassing the cache) that most calls are still running when
    # SIGTERM arrives, however fast the machine.
    refs = _tile_refs(tiles, 32, "drain-")

    before = _started(replica, "/hitl.v1.FeatureService/Embed")

    async def scenario() -> tuple[list[str], str, float]:
        channel = open_channel(f"127.0.0.1:{replica.port}", rs.FEATURE, security=rs.ADMIN)
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        try:
            async def one(n: int) -> str:
                batch = [feature_pb2.ImageRef(id=f"{r.id}-{n}", data=r.data) for r in refs]
                try:
                    reply = await stub.Embed(feature_pb2.EmbedRequest(
                        images=batch, bypass_cache=True), timeout=grace + 30)
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name
                ok = all(r.WhichOneof("outcome") == "features" for r in reply.results)
                return "ok" if ok and len(reply.results) == len(batch) else "bad result"

            in_flight = [asyncio.create_task(one(n)) for n in range(calls)]
            embed = "/hitl.v1.FeatureService/Embed"
            await _until(lambda: _started(replica, embed) >= before + calls,
                         f"fewer than {calls} Embed calls arrived", 0.02)
            started = time.monotonic()
            replica.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            running = sum(not t.done() for t in in_flight)
            assert running >= calls // 2, f"only {running} calls still running at SIGTERM"
            await asyncio.sleep(0.5)
            try:  # a new call after SIGTERM is turned away (not lost on a dying server)
                late = (await one(999))
            except Exception as exc:
                late = type(exc).__name__
            outcomes = await asyncio.gather(*in_flight)
            code = await asyncio.to_thread(replica.popen.wait, grace + 15)  # type: ignore[union-attr]
            return outcomes, f"{late}/{code}", time.monotonic() - started
        finally:
            await channel.close()

    outcomes, late_and_code, seconds = asyncio.run(scenario())
    rs.start(replica)  # back for the round-robin test
    late, code = late_and_code.split("/")
    report.fault(report.FaultRun("feature SIGTERM with Embed calls in flight", 1, calls,
                                 outcomes.count("ok"), outcomes.count("ok"),
                                 calls - outcomes.count("ok"), unit="calls"))
    report.figure("feature drain after SIGTERM, s", f"{seconds:.1f} (grace {grace:.0f})")
    assert outcomes == ["ok"] * calls
    assert late == "UNAVAILABLE"
    assert code == "0" and seconds < grace + 5


def test_round_robin_calls_continue_when_a_replica_is_killed(replica, shared_feature, tiles):
    refs = _tile_refs(tiles, 4, "rr-")
    target = f"ipv4:127.0.0.1:{replica.port},127.0.0.1:{shared_feature.port}"
    before = rs.prometheus(int(replica.env["FEATURE_METRICS_PORT"]))

    async def scenario() -> list[str]:
        channel = open_channel(target, rs.FEATURE, security=rs.ADMIN)
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        outcomes: list[str] = []
        stop = asyncio.Event()
        try:
            workers = [asyncio.create_task(_embed_until(stub, refs, stop, outcomes))
                       for _ in range(6)]
            # Until the replica has served (round robin uses it).
            key = 'feature_items_total{outcome="features"}'
            await _until(lambda: rs.prometheus(int(replica.env["FEATURE_METRICS_PORT"])).get(
                key, 0) > before.get(key, 0), "round robin never used replica", 0.5)
            await asyncio.to_thread(rs.kill, replica)
            killed_at = len(outcomes)
            # Calls go on after the kill: more than six of them.
            await _until(lambda: len(outcomes) > killed_at + 6,
                         "calls stopped after the kill", 0.2)
            stop.set()
            await asyncio.gather(*workers)
            return outcomes
        finally:
            await channel.close()

    outcomes = asyncio.run(scenario())
    report.fault(report.FaultRun("one of two feature replicas SIGKILLed (Embed calls)", 1,
                                 len(outcomes), outcomes.count("ok"), outcomes.count("ok"),
                                 len(outcomes) - outcomes.count("ok"), unit="calls"))
    assert set(outcomes) == {"ok"}, {o: outcomes.count(o) for o in set(outcomes)}
