"""Two feature-service containers behind one trainer (the StatefulSet's two replicas,
found through the headless Service's names): both receive the trainer's Embed calls, as
their own metrics show, and one stopped in the middle of the dataset's extraction loses
nothing: every item ends up with its features, none failed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.containers.annotators import signed_in, status
from tests.containers.pods import Running, running, tiles_dataset
from tools.containers import run

pytestmark = pytest.mark.containers

# Enough images that the extraction is still running when a replica stops.
POSITIVES, NEGATIVES = 150, 1050
ITEMS = "feature_items_total"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("tiles")
    tiles_dataset(folder, POSITIVES, NEGATIVES)
    with running(tmp_path_factory.mktemp("stack"), folder / "labels.csv") as started:
        yield started


@pytest.mark.timeout(1500)
async def test_both_replicas_embed_and_one_stopped_mid_extraction_loses_nothing(
        stack: Running) -> None:
    async with signed_in(stack.url(), stack.secret("gateway-annotators")["admin"]) as admin:
        await stop_one_mid_extraction(stack, admin)


async def stop_one_mid_extraction(stack: Running, admin: aiohttp.ClientSession) -> None:
    first, second = stack.pods("feature")
    deadline = time.monotonic() + 300
    while min(stack.counter(first, ITEMS), stack.counter(second, ITEMS)) < 20:
        assert time.monotonic() < deadline, "the replicas did not both receive Embed calls"
        await asyncio.sleep(0.5)
    before = await status(admin)
    pending = before["extraction"]["pending"]
    assert pending > 100, f"the extraction nearly finished before the stop ({pending} left)"

    run("stop", "--time", "30", stack.container(second), timeout=120)
    stopped_at = stack.counter(first, ITEMS)
    while (now := await status(admin))["extraction"]["pending"] > 0:
        assert time.monotonic() < deadline + 600, f"extraction stalled: {now['extraction']}"
        await asyncio.sleep(1.0)
    # Every pool item has its features (the known-label splits are embedded as a sample
    # that grows in the background); none failed.
    assert now["extraction"]["failed"] == 0 and now["extraction"]["retrying"] == 0
    assert now["counts"]["items"] == POSITIVES + NEGATIVES
    assert now["counts"]["embedded"] == now["counts"]["pool"] > 0
    # The rest went to the replica that kept running.
    assert stack.counter(first, ITEMS) >= stopped_at + pending * 0.5
