"""A memory limit low enough to be hit: the gateways at 128 MiB under a flood of large
classify uploads, while two annotators keep labelling through the same gateway. The
limit is hit, and it ends in a clean restart or a refusal, never a lost label: every
acknowledged label is in the export exactly once, and the gateway serves again."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.containers.annotators import Annotator, export_counts, signed_in
from tests.containers.pods import CSRF, Running, running, tiles_dataset
from tools.kube_local import Plan
from tools.local_up import probe

pytestmark = pytest.mark.containers

LIMIT = "128Mi"
UPLOAD_BYTES = 24 << 20  # under GATEWAY_CLASSIFY_MAX_BYTES (32 MiB): read whole
FLOOD = 12  # uploads at once: far more than 128 MiB in flight


def limit_gateways(plan: Plan) -> None:
    for pod in plan.pods:
        if pod.app == "gateway":
            container = pod.document["spec"]["containers"][0]
            resources = container["resources"]
            resources["limits"]["memory"] = resources["requests"]["memory"] = LIMIT
            # One annotator's uploads at once, so that one client can push the gateway to
            # its memory limit (by default it may have one in flight).
            container.setdefault("env", []).append(
                {"name": "GATEWAY_UPLOADS_PER_CALLER", "value": str(FLOOD)})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, dict[str, int]]]:
    folder = tmp_path_factory.mktemp("tiles")
    truth = tiles_dataset(folder, 60, 240)
    with running(tmp_path_factory.mktemp("stack"), folder / "labels.csv",
                 edit=limit_gateways) as started:
        yield started, truth


async def upload(url: str, token: str, outcomes: list[str]) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(url, cookie_jar=jar, timeout=timeout) as http:
        try:
            async with http.post("/api/login", json={"token": token}, headers=CSRF) as r:
                assert r.status == 200
            form = aiohttp.FormData()
            form.add_field("image", os.urandom(UPLOAD_BYTES), filename="big.jpg",
                           content_type="image/jpeg")
            async with http.post("/api/classify", data=form, headers=CSRF) as r:
                outcomes.append(str(r.status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcomes.append(type(exc).__name__)  # the connection died with the process


async def test_the_gateway_at_its_limit_restarts_or_refuses_and_loses_no_label(
        stack: tuple[Running, dict[str, int]]) -> None:
    started, truth = stack
    tokens, gateway = started.secret("gateway-annotators"), started.pod("gateway")
    restarts = int(started.inspect(gateway)["RestartCount"])
    people = [Annotator(started.url(), tokens[name], truth) for name in ("admin", "annotator")]
    outcomes: list[str] = []

    async def flood() -> None:
        while sum(len(p.acknowledged) for p in people) < 10:
            await asyncio.sleep(0.2)
        await asyncio.gather(*(upload(started.url(), tokens["annotator"], outcomes)
                               for _ in range(FLOOD)))

    info = started.inspect(gateway)
    assert info["HostConfig"]["Memory"] == 128 << 20
    await asyncio.gather(flood(), *(p.label(40, timeout_s=600) for p in people))
    assert len(outcomes) == FLOOD
    restarted = int(started.inspect(gateway)["RestartCount"]) - restarts
    # Hit: the kernel killed it at the limit (SIGKILL, 137) and the runtime restarted it
    # as many times; or it held, refusing with an answer every upload it could not take.
    assert started.exits(gateway) == [137] * restarted
    assert restarted > 0 or all(o in ("413", "429", "503") for o in outcomes), outcomes
    deadline = time.monotonic() + 120
    while not probe(gateway):
        assert time.monotonic() < deadline, "the gateway did not come back"
        await asyncio.sleep(1.0)

    assert all(p.refused == [] and p.acknowledged == p.sent for p in people)
    async with signed_in(started.url(), tokens["admin"]) as admin:
        counts = await export_counts(admin)
    acknowledged = set().union(*(p.acknowledged for p in people))
    assert {i: counts[i] for i in acknowledged} == dict.fromkeys(acknowledged, 1)
    assert set(counts) == acknowledged
