"""20 annotators label through a real gateway while the trainer behind it is killed with
SIGKILL three times and restarted on its data folder: every acknowledged label is in
the labelled set exactly once, and the labels that failed are delivered by retry."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest

from tests.reliability import report
from tests.reliability import stack as rs
from tests.reliability.annotators import Annotator, Tally
from trainer_service.datasets import Catalog
from trainer_service.domain import Label, LoadingState, Strategy, TrainerError
from trainer_service.intake import Intake
from trainer_service.store.database import Database
from trainer_service.store.labels import LabelLog
from trainer_service.store.served import Served, ServedLog

ANNOTATORS = 20
KILLS = 3


def _killer(trainer, gap_s: float, log: list[float]) -> None:  # type: ignore[no-untyped-def]
    """Kill, restart, let the annotators work a while; three times, then a last while."""
    for _ in range(KILLS):
        time.sleep(gap_s)
        rs.kill(trainer)
        started = time.monotonic()
        time.sleep(0.3)  # long enough for the calls in flight to fail
        rs.start(trainer, timeout=120)
        log.append(time.monotonic() - started)
    time.sleep(gap_s)


async def _annotate_while_killing(base: str, trainer, gap_s: float, tally: Tally,  # type: ignore[no-untyped-def]
                                  think_s: float) -> list[float]:
    log: list[float] = []
    done = threading.Event()

    def kill_loop() -> None:
        try:
            _killer(trainer, gap_s, log)
        finally:
            done.set()

    killer = asyncio.create_task(asyncio.to_thread(kill_loop))
    await asyncio.gather(*(Annotator(base, f"crash-{i}", tally, think_s).run(
        lambda: not done.is_set()) for i in range(ANNOTATORS)))
    await killer
    return log


def test_acknowledged_annotations_survive_trainer_kills_exactly_once(
        tmp_path, shared_feature, shape):
    # Enough items that the annotators never run out (annotated items are not served again).
    pool = rs.pool_manifest(tmp_path / "pool.csv", shape.pick(3000, 7326))
    trainer = rs.trainer_service(tmp_path, shared_feature.address, pool, TRAINER_PREFETCH="0")
    rs.start(trainer)
    gateway = rs.gateway_service(tmp_path, trainer.address, shared_feature.address,
                                 GATEWAY_RPC_DEADLINE_S="3")
    rs.start(gateway)
    tally = Tally()
    try:
        downtimes = asyncio.run(_annotate_while_killing(
            f"http://127.0.0.1:{gateway.port}", trainer, shape.pick(1.5, 10.0), tally,
            shape.pick(0.02, 0.2)))
        counts = rs.export_counts(trainer.address)
    finally:
        gateway.stop()
        trainer.stop()

    exactly_once = {i for i in tally.sent if counts[i] == 1}
    lost = {i for i in tally.acknowledged if counts[i] == 0}
    duplicated = {i for i, n in counts.items() if n > 1}
    report.fault(report.FaultRun("trainer SIGKILL x3 under 20 annotators", len(downtimes),
                                 len(tally.sent), len(tally.acknowledged), len(exactly_once),
                                 len(lost), len(duplicated)))
    report.figure("trainer restart after SIGKILL, s (max)", f"{max(downtimes):.1f}")
    report.figure("trainer kills: failed deliveries retried", str(tally.retries))
    assert len(downtimes) == KILLS
    assert tally.refused == []
    assert tally.retries > 0, "the kills should have made some deliveries fail first"
    assert lost == set() and duplicated == set()
    # Everything sent was delivered in the end (retries with the same id), and nothing
    # else is in the labelled set.
    assert tally.acknowledged == tally.sent
    assert exactly_once == tally.sent
    assert set(counts) == tally.sent
    assert len(tally.sent) >= ANNOTATORS * 5
    assert len(tally.sent) < shape.pick(3000, 7326) * 0.9, "the pool ran dry"


async def test_a_label_for_an_item_not_loaded_yet_is_retried_not_refused(tmp_path):
    """Right after a restart the trainer serves while the rest of the dataset loads; a
    label for an item of that rest, served before the restart, must be retryable
    (UNAVAILABLE), never NOT_FOUND; one never served is refused whatever the state."""
    database = Database(tmp_path / "labels.sqlite3")
    served = ServedLog(database, grace_s=60)
    now = time.time()
    await served.record("x", [("later", Served(Strategy.RANDOM, "", now, now + 60))])
    catalog = Catalog()
    # Only what an answer reads before it is written: the catalogue, the log, the servings.
    intake = Intake(catalog, LabelLog(database), served, *(None,) * 5,
                    notify=lambda: None)  # type: ignore[arg-type]
    label = {"annotation_id": "a" * 32, "item_id": "later", "label": Label.POSITIVE,
             "annotator": "x"}
    try:
        with pytest.raises(TrainerError) as loading:
            await intake.add(**label)
        assert loading.value.code == grpc.StatusCode.UNAVAILABLE and "loading" in str(loading.value)
        with pytest.raises(TrainerError) as unserved:
            await intake.add(**{**label, "annotator": "y"})
        assert unserved.value.code == grpc.StatusCode.PERMISSION_DENIED
        catalog.state = LoadingState.READY
        with pytest.raises(TrainerError) as loaded:
            await intake.add(**label)
        assert loaded.value.code == grpc.StatusCode.NOT_FOUND
    finally:
        await database.close()
