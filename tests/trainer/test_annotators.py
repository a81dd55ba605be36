"""For the annotators' sake, on real trainer and feature processes and real street tiles:
skips and unsure marks, rechecks, no near-duplicates leased together, the detector's box
on each item, and likely label errors reviewed until the majority corrects them."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from PIL import Image

from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.reliability.stack import TOKENS
from tests.support import DATA, free_port, running, tiles_manifest

POS, NEG = common_pb2.LABEL_POSITIVE, common_pb2.LABEL_NEGATIVE
SKIP, UNSURE = common_pb2.LABEL_SKIP, common_pb2.LABEL_UNSURE
REVIEW, RECHECK = trainer_pb2.STRATEGY_REVIEW, trainer_pb2.STRATEGY_RECHECK
TWINS = 6


def with_twins(folder: Path, truth: dict[str, int]) -> dict[str, tuple[str, str]]:
    """Adds, unlabelled (so they are pool items), an exact copy or a re-encoded copy (JPEG
    quality 90: cosine 0.997 or more to the original on the lite embedding, by
    bench.near_duplicates) of a few tiles. Returns twin id -> (its original, how made)."""
    manifest = folder / "tiles.csv"
    rows = manifest.read_text().splitlines()
    originals = [r.split(",") for r in rows[1:1 + TWINS]]
    twins: dict[str, tuple[str, str]] = {}
    extra = []
    for k, (item_id, location, _label) in enumerate(originals):
        copy = folder / f"copy-{k}.jpg"
        if k % 2:
            shutil.copyfile(location, copy)
            how = "byte copy"
        else:
            Image.open(location).convert("RGB").save(copy, quality=90)
            how = "re-encoded"
        twins[f"twin-{k}"] = (item_id, how)
        extra.append(f"twin-{k},{copy}")
    manifest.write_text("\n".join([*rows, *extra]) + "\n")
    return twins


def env(port: int, folder: Path, data: Path, feature: str, **extra: str) -> dict[str, str]:
    return {"TRAINER_PORT": str(port), "TRAINER_METRICS_PORT": "0",
            "TRAINER_FEATURE_ADDR": feature, "TRAINER_DATASET": str(folder / "tiles.csv"),
            "TRAINER_DATASET_ROOTS": str(DATA),
            "TRAINER_DATA_DIR": str(data), "TRAINER_VALIDATION_FRACTION": "0.1",
            "TRAINER_EVALUATION_FRACTION": "0.1", "TRAINER_DEBOUNCE_S": "0.3",
            "TRAINER_EMBED_BATCH": "16", "LOG_LEVEL": "WARNING",
            # The session's shared feature service knows its callers (tests/reliability).
            "TRAINER_FEATURE_TOKEN": TOKENS["trainer"], **extra}


class Client:
    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = trainer_pb2_grpc.TrainerServiceStub(self.channel)

    async def status(self) -> trainer_pb2.Status:
        return (await self.stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10)).status

    async def lease(self, annotator: str, count: int, held: tuple[str, ...] = ()
                    ) -> list[trainer_pb2.Item]:
        return list((await self.stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
            annotator=annotator, count=count, held_item_ids=held), timeout=10)).items)

    async def annotate(self, item_id: str, label: int, annotator: str, note: str = ""
                       ) -> trainer_pb2.AddAnnotationResponse:
        return await self.stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
            annotation_id=uuid.uuid4().hex, item_id=item_id, label=label, annotator=annotator,
            note=note), timeout=10)

    async def export(self, include_skipped: bool) -> list[trainer_pb2.Annotation]:
        return [a async for batch in self.stub.ExportLabels(trainer_pb2.ExportLabelsRequest(
            include_skipped=include_skipped), timeout=30) for a in batch.annotations]

    async def ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            s = await self.status()
            if (s.loading.state == trainer_pb2.LOADING_STATE_READY and not s.extraction.pending
                    and s.counts.embedded >= s.counts.pool > 0):
                return
            assert time.monotonic() < deadline, f"not embedded: {s.counts}"
            await asyncio.sleep(0.3)

    async def close(self) -> None:
        await self.channel.close()


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> tuple[Path, dict, dict]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("annotators")
    truth = tiles_manifest(folder / "tiles.csv", 40, 80)
    return folder, truth, with_twins(folder, truth)


@pytest.fixture
def passes_stack(shared_feature, tiles, tmp_path) -> Iterator[tuple[int, dict, dict]]:  # type: ignore[no-untyped-def]
    """A fresh trainer per test (its features come from the feature service's cache after
    the first): no review, a recheck in five items after five answers."""
    folder, truth, twins = tiles
    port = free_port()
    with running("trainer_service", env(port, folder, tmp_path / "data", shared_feature.address,
                                        TRAINER_REVIEW_SHARE="0", TRAINER_RECHECK_SHARE="0.2",
                                        TRAINER_RECHECK_GAP="5"),
                 tmp_path / "trainer.log", port):
        yield port, truth, twins


async def test_skips_and_unsure_go_to_others_never_train_and_export_on_request(
        passes_stack) -> None:  # type: ignore[no-untyped-def]
    port, _, twins = passes_stack
    paired = set(twins) | {original for original, _ in twins.values()}
    client = Client(port)
    try:
        await client.ready()
        # Items without a twin: one with a twin leased to the skipper would rightly be
        # kept from the others too.
        first = [i for i in await client.lease("skipper", 8) if i.id not in paired]
        skipped, unsure = first[0].id, first[1].id
        await client.annotate(skipped, SKIP, "skipper")
        await client.annotate(unsure, UNSURE, "skipper", note="too dark to tell")
        seen: set[str] = set()
        while batch := await client.lease("skipper", 50, tuple(seen)):
            seen |= {i.id for i in batch}
        assert skipped not in seen and unsure not in seen  # free, but not for them
        others = {i.id for i in await client.lease("other", 50)}
        assert {skipped, unsure} <= others  # back in the pool for everybody else
        status = await client.status()
        assert (status.counts.skipped, status.counts.unsure) == (1, 1)
        assert status.counts.labelled_positive + status.counts.labelled_negative == 0
        mine = next(a for a in status.annotators if a.annotator == "skipper")
        assert (mine.skipped, mine.unsure, mine.answers) == (1, 1, 0)
        assert not await client.export(include_skipped=False)
        everything = {a.item_id: a for a in await client.export(include_skipped=True)}
        assert everything[skipped].label == SKIP
        assert (everything[unsure].label, everything[unsure].note) == (UNSURE,
                                                                       "too dark to tell")
        with pytest.raises(grpc.aio.AioRpcError) as too_long:
            await client.annotate(skipped, UNSURE, "other", note="x" * 201)
        assert too_long.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await client.close()


async def test_near_duplicates_are_never_leased_together_nor_after_a_label(
        passes_stack) -> None:  # type: ignore[no-untyped-def]
    port, truth, twins = passes_stack
    client = Client(port)
    try:
        await client.ready()
        partner = {**{t: o for t, (o, _) in twins.items()},
                   **{o: t for t, (o, _) in twins.items()}}
        held: list[str] = []
        labelled: set[str] = set()
        served = 0
        while batch := await client.lease("twin-tester", 10, tuple(held)):
            for item in batch:  # never beside its twin, nor after its twin was labelled
                other = partner.get(item.id)
                assert other not in held and other not in labelled, (item.id, other)
                assert other not in {i.id for i in batch}
            held += [i.id for i in batch]
            served += len(batch)
            for item in batch[:5]:  # answer half, keep half
                label = POS if truth.get(partner.get(item.id, item.id), 0) else NEG
                await client.annotate(item.id, label, "twin-tester")
                held.remove(item.id)
                labelled.add(item.id)
        # Of each pair in the pool, one was served and the other never.
        pool_pairs = [(t, o) for t, (o, _) in twins.items()]
        assert sum((t in labelled or t in held) + (o in labelled or o in held)
                   for t, o in pool_pairs) <= len(pool_pairs)
        assert served > 80
    finally:
        await client.close()


async def test_items_carry_the_detectors_box_and_earlier_items_come_back(passes_stack) -> None:  # type: ignore[no-untyped-def]
    port, truth, _ = passes_stack
    client = Client(port)
    try:
        await client.ready()
        boxes = rechecks = 0
        given: dict[str, int] = {}
        for _ in range(12):
            for item in await client.lease("repeater", 5):
                if item.HasField("evidence"):
                    e = item.evidence
                    assert 0 < e.score <= 1 and 0 <= e.box.x1 < e.box.x2 <= 1
                    assert 0 <= e.box.y1 < e.box.y2 <= 1
                    boxes += 1
                label = POS if truth.get(item.id, 0) else NEG
                if item.strategy == RECHECK:
                    assert item.id in given  # their own earlier item
                    rechecks += 1
                given[item.id] = label
                await client.annotate(item.id, label, "repeater")
        assert boxes > 0 and rechecks > 0
        status = await client.status()
        mine = next(a for a in status.annotators if a.annotator == "repeater")
        assert mine.rechecks == rechecks and mine.recheck_agreements == rechecks
        # Always the same answer, but both answers given: kappa 1 when defined.
        assert not mine.HasField("self_kappa") or mine.self_kappa == pytest.approx(1.0)
    finally:
        await client.close()


@pytest.fixture
def review_stack(shared_feature, tiles, tmp_path) -> Iterator[tuple[int, dict]]:  # type: ignore[no-untyped-def]
    folder, truth, twins = tiles
    port = free_port()
    with running("trainer_service", env(port, folder, tmp_path / "data", shared_feature.address,
                                        TRAINER_REVIEW_SHARE="0.5", TRAINER_RECHECK_SHARE="0",
                                        TRAINER_MIX="random=1"),
                 tmp_path / "trainer.log", port):
        yield port, {**truth, **{t: truth[o] for t, (o, _) in twins.items()}}


async def test_likely_errors_go_to_others_and_the_majority_corrects_them(review_stack) -> None:  # type: ignore[no-untyped-def]
    port, truth = review_stack
    client = Client(port)
    try:
        await client.ready()
        # The first annotator answers 60 items, wrong on every sixth.
        wrong: set[str] = set()
        done = 0
        while done < 60:
            for item in await client.lease("first", 10):
                right = POS if truth[item.id] else NEG
                if done % 6 == 0 and item.strategy != trainer_pb2.STRATEGY_GOLD:
                    wrong.add(item.id)
                    right = NEG if right == POS else POS
                await client.annotate(item.id, right, "first")
                done += 1
        await client.stub.Retrain(trainer_pb2.RetrainRequest(), timeout=120)
        # The second and third answer truthfully; review items are never the first's.
        reviewed: dict[str, list[str]] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for annotator in ("second", "third"):
                for item in await client.lease(annotator, 4):
                    if item.strategy == REVIEW:
                        reviewed.setdefault(item.id, []).append(annotator)
                    await client.annotate(item.id, POS if truth[item.id] else NEG, annotator)
            status = await client.status()
            if status.counts.corrected >= 2 and not status.counts.contested:
                break
            await asyncio.sleep(0.5)
        status = await client.status()
        assert status.counts.corrected >= 2, (status.counts, len(wrong), reviewed)
        assert status.counts.reviewed >= status.counts.corrected
        for who in reviewed.values():
            assert len(who) == len(set(who)) and "first" not in who
        # Each correction was a real error: the majority now holds the truth.
        corrected = [i for i, who in reviewed.items() if i in wrong and len(who) == 2]
        assert len(corrected) >= 2
        export = await client.export(include_skipped=False)
        for item_id in corrected:
            votes = [a.label for a in export if a.item_id == item_id]
            truth_label = POS if truth[item_id] else NEG
            assert votes.count(truth_label) == 2 and len(votes) == 3
    finally:
        await client.close()
