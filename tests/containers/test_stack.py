"""The local overlay's pods from the built images: each answers its probes and its
metrics; the runtime enforces the user, read-only root, capabilities and limits the
manifests ask for; two annotators give 100 labels through the gateway, a model is trained
and the page shows its live score; another team reaches the feature service from outside
the pods' network with its own token, and not without; the trainer killed during a burst
is restarted and every acknowledged label is in the export exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from hitl.channels import ClientSecurity, open_channel
from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.containers.annotators import Annotator, export_counts, signed_in, status
from tests.containers.pods import Running, running, tiles_dataset
from tests.support import TILES
from tools.containers import run
from tools.local_up import probe

pytestmark = pytest.mark.containers

POSITIVES, NEGATIVES = 80, 320
TEAM_TOKEN = secrets.token_hex(24)
# Each service's own metrics, besides the process's.
METRICS = {"feature": "feature_items_total", "trainer": "trainer_",
           "gateway": "gateway_"}


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    folder = tmp_path_factory.mktemp("tiles")
    return folder / "labels.csv", tiles_dataset(folder, POSITIVES, NEGATIVES)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          truth: tuple[Path, dict[str, int]]) -> Iterator[Running]:
    digest = hashlib.sha256(TEAM_TOKEN.encode()).hexdigest()
    with running(tmp_path_factory.mktemp("stack"), truth[0],
                 add={"grpc-callers": {"team-a": f"sha256:{digest}"}}) as started:
        yield started


def test_every_pod_answers_its_probes_and_its_metrics(stack: Running) -> None:
    for pod in stack.plan.pods:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in pod.document["spec"]["containers"][0]:
                assert probe(pod, kind), f"{pod.name}: {kind} fails"
        text = stack.metrics(pod)
        assert METRICS[pod.app] in text and "process_resident_memory_bytes" in text, pod.name


def status_line(pid: int, key: str) -> str:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                if x.startswith(key + ":"))
    return line.split(":", 1)[1].strip()


def test_the_runtime_enforces_the_security_context_and_limits(stack: Running) -> None:
    for pod in stack.plan.pods:
        info = stack.inspect(pod)
        written = pod.document["spec"]["containers"][0]
        context = {**pod.document["spec"]["securityContext"], **written["securityContext"]}
        assert info["Config"]["User"] == f"{context['runAsUser']}:{context['runAsGroup']}"
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        assert not info["EffectiveCaps"] and not info["BoundingCaps"], pod.name
        limit = written["resources"]["limits"]["memory"]
        assert info["HostConfig"]["Memory"] == int(limit[:-2]) << {"Mi": 20, "Gi": 30}[limit[-2:]]
        # The process itself, as the kernel sees it.
        pid = int(info["State"]["Pid"])
        assert status_line(pid, "Uid").split() == [str(context["runAsUser"])] * 4
        assert status_line(pid, "CapEff") == "0" * 16
        assert status_line(pid, "NoNewPrivs") == "1" and status_line(pid, "Seccomp") == "2"
        written_to = run("exec", stack.container(pod), "python", "-c",
                         "open('/app/x', 'w')", check=False)
        assert written_to.returncode != 0 and "Read-only file system" in written_to.stderr


def listing(stack: Running, app: str, folder: str) -> set[str]:
    done = run("exec", stack.container(stack.pod(app)), "python", "-c",
               f"import os; print(*sorted(os.listdir({folder!r})))")
    return set(done.stdout.split())


def test_secrets_reach_the_pods_as_the_manifests_mount_them(stack: Running) -> None:
    callers = stack.secret("grpc-callers")
    assert listing(stack, "feature", "/etc/hitl/callers") == set(callers)
    assert listing(stack, "trainer", "/etc/hitl/callers") == {"gateway", "admin"}
    assert listing(stack, "gateway", "/etc/hitl/annotators") == set(
        stack.secret("gateway-annotators"))
    token = run("exec", stack.container(stack.pod("gateway")), "python", "-c",
                "import os; print(os.environ['GATEWAY_GRPC_TOKEN'])").stdout.strip()
    assert token == callers["gateway"]


async def embed(port: int, token: str | None) -> feature_pb2.EmbedReply:
    tile = sorted((TILES / "images").glob("*.jpg"))[-1]
    security = ClientSecurity(token=token) if token else ClientSecurity()
    async with open_channel(f"127.0.0.1:{port}", "hitl.v1.FeatureService",
                            security=security) as channel:
        return await feature_pb2_grpc.FeatureServiceStub(channel).Embed(
            feature_pb2.EmbedRequest(images=[feature_pb2.ImageRef(
                id="team-a", data=tile.read_bytes())]), timeout=60)


async def test_another_team_reaches_the_feature_service_with_its_own_token_only(
        stack: Running) -> None:
    port = stack.pod("feature").host_ports["grpc"]  # from outside the pods' network
    (result,) = (await embed(port, TEAM_TOKEN)).results
    assert result.WhichOneof("outcome") == "features" and len(result.features.vector) > 0
    for token in (None, "not-" + TEAM_TOKEN):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await embed(port, token)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert re.search(r'caller="team-a"', stack.metrics(stack.pod("feature")))


async def wait_for(check, what: str, timeout: float = 180.0,  # type: ignore[no-untyped-def]
                   every: float = 1.0):
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f}s"
        await asyncio.sleep(every)
    return found


def in_thread(work):  # type: ignore[no-untyped-def]
    """Runs a coroutine to its end on a thread of its own (the browser's sync API holds
    this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def test_two_annotators_give_100_labels_a_model_is_trained_and_the_page_shows_it(
        stack: Running, truth: tuple[Path, dict[str, int]], browser) -> None:  # type: ignore[no-untyped-def]
    tokens = stack.secret("gateway-annotators")
    # One annotator on each gateway replica: sessions hold across replicas.
    people = [Annotator(stack.url(i), tokens[name], truth[1])
              for i, name in enumerate(("admin", "annotator"))]

    async def label() -> None:
        await asyncio.gather(*(person.label(50) for person in people))

    in_thread(label())
    assert all(p.refused == [] and p.acknowledged == p.sent for p in people)

    async def trained() -> tuple[dict, Counter[str]]:
        async with signed_in(stack.url(), tokens["admin"]) as admin:

            async def model() -> dict | None:
                now = await status(admin)
                # A model trained on most of the answers (the last ones may be gold or
                # audit answers, which train nothing), with its live estimate.
                fit = now["model"]
                return now if fit and fit["labels_given"] >= 80 and fit["estimate"] else None

            return await wait_for(model, "model trained on the labels"), \
                await export_counts(admin)

    now, counts = in_thread(trained())
    answers = {a["annotator"]: a["answers"] for a in now["annotators"]}
    assert answers == {"admin": 50, "annotator": 50}
    assert counts == dict.fromkeys(set().union(*(p.acknowledged for p in people)), 1)
    estimate = now["model"]["estimate"]
    assert 0 <= estimate["f1_low"] <= estimate["f1"] <= estimate["f1_high"] <= 1

    page = browser.new_context().new_page()
    page.goto(stack.url(1) + "/login")
    page.fill("#token", tokens["annotator"])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#connection[data-state=up]")
    page.wait_for_function("() => document.getElementById('f1').textContent !== '–'")
    shown = page.inner_text("#f1")
    assert re.search(r"\d", shown), shown
    assert page.inner_text("#f1-interval").startswith("90% interval ")


def test_the_trainer_killed_during_a_burst_loses_no_acknowledged_label(
        stack: Running, truth: tuple[Path, dict[str, int]]) -> None:
    tokens, trainer = stack.secret("gateway-annotators"), stack.pod("trainer")
    restarts = int(stack.inspect(trainer)["RestartCount"])
    people = [Annotator(stack.url(i), tokens[name], truth[1])
              for i, name in enumerate(("annotator", "admin"))]

    def acknowledged() -> int:
        return sum(len(p.acknowledged) for p in people)

    async def kill_during_burst() -> tuple[int, int]:
        # Polled often: two annotators acknowledge dozens of labels a second, so a slow
        # poll would find the burst over. The kill blocks this loop, so the count read
        # after it is the count at the kill.
        await wait_for(lambda: asyncio.sleep(0, acknowledged() >= 10), "labels", 120,
                       every=0.005)
        return stack.kill(trainer), acknowledged()

    async def burst() -> tuple[int, int]:
        killed, *_ = await asyncio.gather(kill_during_burst(), *(p.label(30) for p in people))
        await wait_for(lambda: asyncio.sleep(0, probe(trainer)), "ready trainer")
        return killed  # type: ignore[no-any-return]

    killed, before_kill = in_thread(burst())
    assert all(p.refused == [] and p.acknowledged == p.sent for p in people)
    assert before_kill < acknowledged() == 60, "the kill did not come during the burst"
    # The runtime restarted it (restartPolicy: Always), as a new process.
    assert int(stack.inspect(trainer)["RestartCount"]) == restarts + 1
    assert int(stack.inspect(trainer)["State"]["Pid"]) != killed

    async def export() -> Counter[str]:
        async with signed_in(stack.url(), tokens["admin"]) as admin:
            return await export_counts(admin)

    counts = in_thread(export())
    acknowledged = set().union(*(p.acknowledged for p in people))
    assert {i: counts[i] for i in acknowledged} == dict.fromkeys(acknowledged, 1)
    assert set(counts.values()) == {1}, "a label is in the export more than once"
    # With the 100 of the test before.
    assert len(counts) == 100 + len(acknowledged)
