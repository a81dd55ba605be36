"""Several tasks in one real trainer process over one set of street tiles, with a real lite
feature service: a task added at run time over the embedded tiles serves its first
detector-guided item without a single new Embed (the feature service's own counters say
so), and two tasks labelled at once by their own annotators, through a trainer killed and
started again, each keep exactly their own labels and their own known answers."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from hitl.channels import open_channel
from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.reliability import report
from tests.reliability import stack as rs
from tests.support import tiles_by_class
from tools.supervisor import ServiceProcess

POS, NEG = common_pb2.LABEL_POSITIVE, common_pb2.LABEL_NEGATIVE
PER_CLASS = {"Bicycle": 30, "Hydrant": 30, "Car": 30, "Crosswalk": 30, "Bus": 20}
TASKS_FILE = """
default = "bicycle"

[[task]]
name = "bicycle"
display_name = "Bicycle"

[[task]]
name = "hydrant"
display_name = "Fire hydrant"
positive_class = "source_class=Hydrant"
"""
POSITIVE_CLASS = {"bicycle": "Bicycle", "hydrant": "Hydrant"}
EMBED_METHODS = ("Embed", "EmbedStream")
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass
class Stack:
    feature: ServiceProcess
    trainer: ServiceProcess
    classes: dict[str, str]  # item id -> the tile's source class


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    rs.require_stack()
    tmp = tmp_path_factory.mktemp("tasks")
    classes = tiles_by_class(tmp / "tiles.csv", PER_CLASS)
    (tmp / "tasks.toml").write_text(TASKS_FILE)
    feature = rs.start(rs.feature_service(tmp / "feature", tmp / "cache"))
    trainer = rs.trainer_service(tmp, feature.address, tmp / "tiles.csv",
                                 TRAINER_TASKS_FILE=str(tmp / "tasks.toml"),
                                 TRAINER_GRACE_S="1", TRAINER_DEBOUNCE_S="0.5")
    try:
        rs.start(trainer)
        yield Stack(feature, trainer, classes)
    finally:
        trainer.stop()
        feature.stop()


def status(address: str, task: str) -> trainer_pb2.Status:
    with rs.channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        return stub.GetStatus(trainer_pb2.GetStatusRequest(task=task), timeout=10).status


def wait_embedded(address: str, task: str, timeout: float = 300.0) -> trainer_pb2.Status:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(grpc.RpcError):  # a task still starting: UNAVAILABLE
            found = status(address, task)
            if rs.embedded(found) and found.counts.embedded >= found.counts.pool:
                return found
        assert time.monotonic() < deadline, f"{task}: extraction not done"
        time.sleep(0.3)


def embeds(feature: ServiceProcess) -> dict[str, float]:
    """The feature service's own counts of embedding calls and model batches."""
    samples = rs.prometheus(int(feature.env["FEATURE_METRICS_PORT"]))
    counted = {name: value for name, value in samples.items()
               if any(f'FeatureService/{m}"' in name for m in EMBED_METHODS)
               and name.startswith("grpc_server_handled_total")}
    counted["batches"] = samples.get("feature_batch_size_count", 0.0)
    return counted


def test_a_new_task_over_the_embedded_tiles_serves_at_once_without_any_new_embed(
        stack: Stack) -> None:
    address = stack.trainer.address
    for task in POSITIVE_CLASS:
        wait_embedded(address, task)
    before = embeds(stack.feature)
    assert before, "the feature service counted no Embed: the tiles were never embedded"
    with rs.channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        started = time.monotonic()
        created = stub.CreateTask(trainer_pb2.CreateTaskRequest(task=trainer_pb2.Task(
            name="crosswalk", display_name="Crosswalk",
            positive_class="source_class=Crosswalk")), timeout=120).task
        (first,) = stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
            task="crosswalk", annotator="first", count=1), timeout=10).items
        warm_s = time.monotonic() - started
        assert (created.state, created.source) == ("serving", trainer_pb2.TASK_SOURCE_API)
        # Detector-guided: before its first model a task starts from the detector's top.
        assert first.strategy == trainer_pb2.STRATEGY_COLD_START and first.score > 0
        listed = stub.ListTasks(trainer_pb2.ListTasksRequest(), timeout=10)
        assert [t.name for t in listed.tasks] == ["bicycle", "hydrant", "crosswalk"]
        assert listed.default_task == "bicycle"
    crosswalk = wait_embedded(address, "crosswalk")
    assert (crosswalk.task, crosswalk.display_name) == ("crosswalk", "Crosswalk")
    # Its own known answers: its validation split is read from the crosswalk column.
    assert crosswalk.counts.validation == round(30 * 0.2) + round(110 * 0.2)
    time.sleep(1.0)  # anything it had queued would be on its way by now
    assert embeds(stack.feature) == before
    report.figure("a new task over embedded tiles: first item served (s)", f"{warm_s:.2f}")


@dataclass
class Ledger:
    """What each task's annotators sent: annotation id -> (item, label), per task."""

    sent: dict[str, dict[str, tuple[str, int]]] = field(
        default_factory=lambda: {task: {} for task in POSITIVE_CLASS})
    retries: int = 0
    gold: dict[str, int] = field(default_factory=lambda: dict.fromkeys(POSITIVE_CLASS, 0))


async def call(make, ledger: Ledger):  # type: ignore[no-untyped-def]
    """One call, tried again (as the page's outbox does) while the trainer is away."""
    while True:
        try:
            return await make()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE:
                raise
            ledger.retries += 1
            await asyncio.sleep(0.3)


ANSWER_PAUSE_S = 0.05


async def annotate(address: str, task: str, annotator: str, answers: int,
                   classes: dict[str, str], ledger: Ledger) -> None:
    channel = open_channel(address, rs.TRAINER, security=rs.ADMIN, default_deadline_s=10)
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    try:
        given = 0
        while given < answers:
            reply = await call(lambda: stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
                task=task, annotator=annotator, count=4)), ledger)
            assert reply.items, f"{task} ran out of items"
            for item in reply.items[:answers - given]:
                label = POS if classes[item.id] == POSITIVE_CLASS[task] else NEG
                annotation_id = uuid.uuid4().hex
                ledger.sent[task][annotation_id] = (item.id, label)
                recorded = await call(lambda i=item.id, a=annotation_id, x=label:
                                      stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                                          task=task, annotation_id=a, item_id=i, label=x,
                                          annotator=annotator)), ledger)
                if recorded.HasField("gold_check"):
                    ledger.gold[task] += 1
                    # The known answer is the task's own, so a true answer always agrees.
                    assert recorded.gold_check.agrees, (task, item.id, classes[item.id])
                given += 1
                # A moment between answers, as a person takes: on a fast machine the
                # annotators would otherwise be done before the restart lands.
                await asyncio.sleep(ANSWER_PAUSE_S)
    finally:
        await channel.close()


async def export(address: str, task: str) -> dict[str, trainer_pb2.Annotation]:
    channel = open_channel(address, rs.TRAINER, security=rs.ADMIN, default_deadline_s=30)
    try:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        return {a.annotation_id: a async for batch in stub.ExportLabels(
                trainer_pb2.ExportLabelsRequest(task=task, include_undone=True))
                for a in batch.annotations}
    finally:
        await channel.close()


async def test_two_tasks_labelled_at_once_through_a_trainer_restart_keep_their_own_labels(
        stack: Stack) -> None:
    address, ledger, per_annotator = stack.trainer.address, Ledger(), 24
    for task in POSITIVE_CLASS:
        await asyncio.to_thread(wait_embedded, address, task)
    before = {task: set(await export(address, task)) for task in POSITIVE_CLASS}

    async def restart() -> None:
        while sum(len(s) for s in ledger.sent.values()) < per_annotator * 2:
            await asyncio.sleep(0.1)
        await asyncio.to_thread(rs.kill, stack.trainer)  # no drain: as when a node dies
        await asyncio.to_thread(rs.start, stack.trainer)

    await asyncio.gather(restart(), *[
        annotate(address, task, f"{task}-{n}", per_annotator, stack.classes, ledger)
        for task in POSITIVE_CLASS for n in (1, 2)])
    assert ledger.retries > 0, "the restart should have made some calls wait"
    # One client id used in both tasks is two labels, one in each.
    with rs.channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        for task in POSITIVE_CLASS:
            (item,) = stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
                task=task, annotator=f"{task}-1", count=1), timeout=10).items
            # The true answer: the item may be a known-answer check.
            label = POS if stack.classes[item.id] == POSITIVE_CLASS[task] else NEG
            stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                task=task, annotation_id="same-id-in-both", item_id=item.id, label=label,
                annotator=f"{task}-1"), timeout=10)
            ledger.sent[task]["same-id-in-both"] = (item.id, label)

    for task in POSITIVE_CLASS:
        exported = await export(address, task)
        new = {k: v for k, v in exported.items() if k not in before[task]}
        assert {k: (a.item_id, a.label) for k, a in new.items()} == ledger.sent[task]
        assert {a.annotator for a in new.values()} == {f"{task}-1", f"{task}-2"}
        found = status(address, task)
        assert found.task == task
        assert found.counts.gold_checks == found.counts.gold_agreements
        assert found.counts.gold_checks >= ledger.gold[task] > 0
    report.figure("two tasks through a trainer restart: labels sent, crossed",
                  f"{sum(len(s) for s in ledger.sent.values())}, 0")


def test_a_task_whose_column_the_dataset_lacks_is_refused_and_leaves_no_trace(
        stack: Stack) -> None:
    with rs.channel(stack.trainer.address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)

        def create(positive_class: str) -> trainer_pb2.Task:
            return stub.CreateTask(trainer_pb2.CreateTaskRequest(task=trainer_pb2.Task(
                name="palms", display_name="Palm", positive_class=positive_class)),
                timeout=120).task

        with pytest.raises(grpc.RpcError) as refused:
            create("kind=Palm")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "no column 'kind'" in str(refused.value.details())
        listed = stub.ListTasks(trainer_pb2.ListTasksRequest(include_archived=True),
                                timeout=10).tasks
        assert "palms" not in [t.name for t in listed]
        assert create("source_class=Palm").state == "serving"  # the name is free
