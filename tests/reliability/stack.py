"""Real service processes for the reliability and hostile-input tests, built on the
benchmark's helpers (bench/stack.py) and so on the one supervisor: feature, trainer and
gateway on free loopback ports, a manifest of shared street tiles, and the probes the
tests need (trainer export, status, memory, Prometheus counters).

Authentication is on in every one of them, as in Kubernetes: the trainer presents its
token to the feature service, the gateway its token to both, and the tests call the
services as "admin"."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from bench import stack
from bench.dataset import read_labelled, stratified_subset, write_manifest
from hitl.channels import ClientSecurity, open_channel
from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from tests.support import TILES, free_port, require_data, require_lite_models
from tools.probes import prometheus, rss_mib  # noqa: F401 - the tests take them from here
from tools.supervisor import ServiceProcess

TRAINER = "hitl.v1.TrainerService"
FEATURE = "hitl.v1.FeatureService"
CSRF = {"X-Requested-With": "hitl-reliability"}
TOKENS = {"trainer": "trainer-token-for-tests-0001", "gateway": "gateway-token-for-tests-0002",
          "admin": "admin-token-for-tests-00003", "team": "another-team-token-0004"}
ADMIN = ClientSecurity(token=TOKENS["admin"])


def tokens(*names: str) -> str:
    """A <SERVICE>_CALLER_TOKENS value for these callers."""
    return ",".join(f"{name}={TOKENS[name]}" for name in names)


def channel(address: str, token: str = TOKENS["admin"],
            options: list[tuple[str, int]] | None = None) -> grpc.Channel:
    """A blocking channel to a loopback service that presents `token` (gRPC's local
    credentials: plaintext on loopback, and call credentials are allowed on it)."""
    credentials = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), grpc.access_token_call_credentials(token))
    return grpc.secure_channel(address, credentials, options=options)


def require_stack() -> None:
    missing = stack.missing_modules("feature_service", "trainer_service", "annotation_gateway")
    if missing:
        pytest.skip(f"{', '.join(missing)} not in this checkout yet")
    require_data(TILES)
    require_lite_models()


def tiles_manifest(path: Path, size: int, seed: int = 0) -> Path:
    """`size` labelled street tiles (stratified), written as a trainer manifest."""
    return write_manifest(stratified_subset(read_labelled(TILES), size, seed), path)


def pool_manifest(path: Path, size: int) -> Path:
    """`size` street tiles without labels: all of them join the pool, and with
    TRAINER_PREFETCH=0 only the ones annotated are embedded, which keeps a test that
    needs many items to annotate cheap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write("id,location\n")
        for example in read_labelled(TILES)[:size]:
            f.write(f"{example.id},{example.location}\n")
    return path


def feature_service(state: Path, cache: Path, **env: str) -> ServiceProcess:
    service = stack.feature_service(state, cache)
    service.env["FEATURE_METRICS_PORT"] = str(free_port())
    service.env["FEATURE_CALLER_TOKENS"] = tokens("trainer", "gateway", "admin", "team")
    # The default settings, not ones timed at start: these tests are about faults and
    # load, and a calibration would cost each start seconds (tests/feature times it).
    service.env["FEATURE_CALIBRATION_S"] = "0"
    service.env.update(env)
    return service


def trainer_service(state: Path, feature_addr: str, manifest: Path, name: str = "trainer",
                    **env: str) -> ServiceProcess:
    return stack.trainer_service(state, state / name, feature_addr, manifest, {
        "TRAINER_DEBOUNCE_S": "1", "TRAINER_FEATURE_TOKEN": TOKENS["trainer"],
        "TRAINER_CALLER_TOKENS": tokens("gateway", "admin", "team"), **env}, name=name)


def gateway_service(state: Path, trainer_addr: str, feature_addr: str,
                    **env: str) -> ServiceProcess:
    service = stack.gateway(state, trainer_addr, feature_addr)
    service.env["GATEWAY_GRPC_TOKEN"] = TOKENS["gateway"]
    service.env.update(env)
    return service


def start(service: ServiceProcess, timeout: float = 180.0) -> ServiceProcess:
    return service.start().wait_healthy(timeout)


def kill(service: ServiceProcess) -> None:
    """SIGKILL: no drain, no cleanup, as when a node dies."""
    service.kill()


def trainer_status(address: str) -> trainer_pb2.Status:
    with channel(address) as blocking:
        stub = trainer_pb2_grpc.TrainerServiceStub(blocking)
        return stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=5).status


def wait_status(address: str, done, timeout: float = 180.0,  # type: ignore[no-untyped-def]
                what: str = "condition") -> trainer_pb2.Status:
    deadline = time.monotonic() + timeout
    while True:
        status = trainer_status(address)
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"trainer at {address}: {what} not reached in {timeout}s; "
                               f"last status: {status}")
        time.sleep(0.2)


def embedded(status: trainer_pb2.Status) -> bool:
    return (status.loading.state == trainer_pb2.LOADING_STATE_READY
            and status.extraction.pending == 0 and status.counts.embedded > 0)


def export_counts(address: str, include_undone: bool = True) -> Counter[str]:
    """How many times each annotation id is in the trainer's labelled set."""

    async def read() -> Counter[str]:
        aio = open_channel(address, TRAINER, security=ADMIN)
        try:
            stub = trainer_pb2_grpc.TrainerServiceStub(aio)
            counts: Counter[str] = Counter()
            async for batch in stub.ExportLabels(
                    trainer_pb2.ExportLabelsRequest(include_undone=include_undone), timeout=30):
                counts.update(a.annotation_id for a in batch.annotations)
            return counts
        finally:
            await aio.close()

    return asyncio.run(read()) if not _in_loop() else _run_in_thread(read)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(factory):  # type: ignore[no-untyped-def]
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class MemorySampler:
    """Samples the resident memory of processes every `every_s` in a thread."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.25) -> None:
        import threading
        self.pids, self.every_s = pids, every_s
        self.samples: dict[str, list[float]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError, RuntimeError):
                    self.samples[name].append(rss_mib(pid))
            self._stop.wait(self.every_s)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self, name: str) -> tuple[float, float]:
        """(mean RSS of the first quarter, of the last quarter), MiB."""
        values = self.samples[name]
        quarter = max(1, len(values) // 4)
        first, last = values[:quarter], values[-quarter:]
        return sum(first) / len(first), sum(last) / len(last)
