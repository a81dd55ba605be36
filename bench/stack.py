"""The benchmarks' service processes: feature, trainer and gateway on free loopback ports,
quiet logs, as named helpers around the one supervisor (tools/supervisor.py)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.dataset import read_labelled, stratified_subset, write_manifest
from tools.probes import free_port
from tools.supervisor import ROOT, ServiceProcess, peak_rss_mib

__all__ = ["ROOT", "cpu_seconds", "feature_service", "free_port", "gateway",
           "missing_modules", "peak_rss_mib", "pool_embedded", "trainer_service",
           "tree_peak_mib", "wait_for_trainer"]

_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and every live descendant (the feature service's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and its live descendants: on a
    shared machine it shows the cost without the wait for other processes."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def tree_peak_mib(pid: int) -> float:
    """Peak resident memory of `pid` and its live descendants, summed."""
    return sum(peak_rss_mib(member) or 0.0 for member in process_tree(pid))


def feature_service(state: Path, cache_dir: Path, extractor: str = "lite") -> ServiceProcess:
    port = free_port()
    return ServiceProcess("feature_service", {
        "FEATURE_PORT": str(port),
        "FEATURE_METRICS_PORT": "0",
        "FEATURE_EXTRACTOR": extractor,
        "FEATURE_DEVICE": "cpu",
        "FEATURE_CACHE_DIR": str(cache_dir),
        "FEATURE_MODELS_DIR": str(ROOT / ".models"),
        "LOG_LEVEL": "WARNING",
    }, state / "logs" / "feature.log", port=port, name="feature")


def manifest_roots(manifest: Path) -> str:
    """The folder holding a manifest's local images (the benchmarks write manifests
    beside their state, naming images of the data folder), for TRAINER_DATASET_ROOTS."""
    if not manifest.is_file():
        return ""
    try:
        with manifest.open(newline="") as f:
            rows = [r for r in csv.reader(f) if len(r) > 1][1:]
    except (csv.Error, ValueError):  # made bad on purpose, or gzipped: the trainer reads it
        return ""
    local = [r[1] for r in rows if Path(r[1]).is_absolute()]
    return os.path.commonpath([str(Path(p).parent) for p in local]) if local else ""


def trainer_service(state: Path, data_dir: Path, feature_addr: str, manifest: Path,
                    extra_env: dict[str, str] | None = None,
                    name: str = "trainer") -> ServiceProcess:
    port = free_port()
    return ServiceProcess("trainer_service", {
        "TRAINER_PORT": str(port),
        "TRAINER_METRICS_PORT": "0",
        "TRAINER_FEATURE_ADDR": feature_addr,
        "TRAINER_DATASET": str(manifest),
        "TRAINER_DATASET_ROOTS": manifest_roots(manifest),
        "TRAINER_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }, state / "logs" / f"{name}.log", port=port, name=name)


def gateway(state: Path, trainer_addr: str, feature_addr: str) -> ServiceProcess:
    port = free_port()
    return ServiceProcess("annotation_gateway", {
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": "0",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_TRAINER_ADDR": trainer_addr,
        "GATEWAY_FEATURE_ADDR": feature_addr,
        # Simulated annotators lease many times a second, far past what a person needs
        # and the default limit allows.
        "GATEWAY_LEASE_RATE": "off",
        "LOG_LEVEL": "WARNING",
    }, state / "logs" / "gateway.log", port=port, name="gateway",
        http_health=f"http://127.0.0.1:{port}/healthz")


def missing_modules(*modules: str) -> list[str]:
    """Service packages without a `__main__` in this checkout (not built yet)."""
    return [m for m in modules if not (ROOT / m / "__main__.py").exists()]


def pool_embedded(status: Any) -> bool:
    """The dataset is loaded and every pool item embedded, nothing left to extract."""
    from hitl.v1 import trainer_pb2

    return bool(status.loading.state == trainer_pb2.LOADING_STATE_READY and status.counts.pool
                and status.counts.embedded >= status.counts.pool
                and not status.extraction.pending)


async def wait_for_trainer(address: str, ready: Callable[[Any], bool], what: str,
                           timeout_s: float, pause_s: float = 0.5) -> None:
    """Polls the trainer's status until `ready(status)`. A failed dataset load stops at
    once, the deadline with an error saying what was awaited (`what`) and how far the
    trainer got."""
    from hitl.channels import open_channel
    from hitl.v1 import trainer_pb2, trainer_pb2_grpc

    channel = open_channel(address, "hitl.v1.TrainerService", default_deadline_s=30)
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            s = (await stub.GetStatus(trainer_pb2.GetStatusRequest())).status
            if s.loading.state == trainer_pb2.LOADING_STATE_FAILED:
                raise RuntimeError(f"trainer failed to load: {s.loading.message}")
            if ready(s):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"trainer did not {what} in {timeout_s:.0f}s (loading: "
                                   f"{s.loading.message!r}, embedded {s.counts.embedded}/"
                                   f"{s.counts.pool})")
            await asyncio.sleep(pause_s)
    finally:
        await channel.close()


def cannot_run(dataset: Path) -> dict | None:
    """Why a benchmark of the three services cannot run here, as its result; None if it can."""
    missing = missing_modules("feature_service", "trainer_service", "annotation_gateway")
    if missing:
        return {"status": "missing", "reason": f"{', '.join(missing)} not built"}
    if not dataset.exists():
        return {"status": "skipped", "reason": f"dataset {dataset} not found"}
    return None


@contextlib.contextmanager
def tile_stack(dataset: Path, items: int, work: Path, cache: Path,
               trainer_settings: dict[str, str]) -> Iterator[list[ServiceProcess]]:
    """Feature, trainer and gateway over a stratified subset of `items` items of
    `dataset`, state in `work` (emptied first): yields them once the trainer's whole pool
    is embedded, and stops them after (their peak memory stays on the objects)."""
    shutil.rmtree(work, ignore_errors=True)
    examples = stratified_subset(read_labelled(dataset), items, seed=0)
    manifest = write_manifest(examples, work / "manifest.csv")
    feature = feature_service(work, cache / "features-lite")
    trainer = trainer_service(work, work / "trainer", feature.address, manifest,
                              {**trainer_settings, "TRAINER_PREFETCH": str(items)})
    services = [feature, trainer]
    try:
        feature.start().wait_healthy()
        trainer.start().wait_healthy()
        asyncio.run(wait_for_trainer(trainer.address, pool_embedded, "embed its pool", 900))
        services.append(gateway(work, trainer.address, feature.address))
        services[-1].start().wait_healthy()
        yield services
    finally:
        for service in reversed(services):
            service.stop()
