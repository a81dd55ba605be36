"""Real feature and trainer services for the gateway tests: the lite extractor and a
manifest of shared street tiles built in a temporary folder."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from tests.reliability import stack as rs
from tests.support import (
    DATA,
    ROOT,
    TILES,
    ServiceProcess,
    free_port,
    require_data,
    require_lite_models,
)
from tools.supervisor import StartError

POSITIVES = 90
NEGATIVES = 210
# An item id made of markup: it must only ever appear as text or an attribute value.
MARKUP_ID = '<img src=x onerror="window.__xss=1">tile'


@dataclass
class Manifest:
    path: Path
    labels: dict[str, int] = field(default_factory=dict)


def build_manifest(folder: Path) -> Manifest:
    """A few hundred labelled tiles, about 30% bicycles so that both classes come quickly."""
    require_data(TILES)
    with open(TILES / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: r["filename"])
    chosen = ([r for r in rows if r["label"] == "1"][:POSITIVES]
              + [r for r in rows if r["label"] == "0"][:NEGATIVES])
    manifest = Manifest(folder / "tiles.csv")
    with open(manifest.path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "location", "label"])
        for i, row in enumerate(chosen):
            item_id = MARKUP_ID if i == POSITIVES + 1 else Path(row["filename"]).stem
            writer.writerow([item_id, str(TILES / row["filename"]), row["label"]])
            manifest.labels[item_id] = int(row["label"])
    return manifest


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return build_manifest(tmp_path_factory.mktemp("manifest"))


def split_ids(manifest: Manifest, split: str) -> set[str]:
    """The items a trainer with the default settings puts in `split` ("VALIDATION": its
    known-answer checks; "EVALUATION": never served): the test knows them from the data,
    as the page never may."""
    from trainer_service.datasets.local import load_manifest
    from trainer_service.domain import Split

    return {item.id for items, _ in load_manifest(manifest.path, 0.2, 0.2, 0, (str(DATA),))
            for item in items if item.split == Split[split]}


def gold_ids(manifest: Manifest) -> set[str]:
    return split_ids(manifest, "VALIDATION")


@pytest.fixture(scope="session")
def feature_addr(shared_feature) -> str:  # type: ignore[no-untyped-def]
    """The session's one lite feature service (tests/reliability/fixtures.py), shared with
    the other tiers so that a full run starts a single one."""
    require_lite_models()
    return str(shared_feature.address)


class TrainerProcess:
    """The trainer as a real process that a test may stop and start again on the same
    port and data folder."""

    def __init__(self, state: Path, feature_addr: str, manifest: Manifest,
                 extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log_path = state / "trainer.log"
        self.env = {"TRAINER_PORT": str(self.port), "TRAINER_METRICS_PORT": "0",
                    "TRAINER_FEATURE_ADDR": feature_addr, "TRAINER_DATASET": str(manifest.path),
                    "TRAINER_DATASET_ROOTS": str(DATA),
                    "TRAINER_DATA_DIR": str(state / "data"), "TRAINER_DEBOUNCE_S": "0.3",
                    "TRAINER_GRACE_S": "1",
                    # The shared feature service knows its callers (tests/reliability).
                    "TRAINER_FEATURE_TOKEN": rs.TOKENS["trainer"],
                    "LOG_LEVEL": "WARNING", **(extra_env or {})}
        self.process: ServiceProcess | None = None

    def start(self) -> TrainerProcess:
        self.process = ServiceProcess("trainer_service", self.env, self.log_path,
                                      port=self.port).start()
        try:
            self.process.wait_healthy(timeout=120)
        except StartError:
            self.process.kill()
            raise
        self.wait_embedded()
        return self

    def wait_embedded(self, timeout: float = 180.0) -> None:
        """Until the dataset is loaded and every pool item embedded, so that what the
        tests are served does not depend on how far extraction has got."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.addr) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            while time.monotonic() < deadline:
                status = stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=5).status
                if (status.loading.state == trainer_pb2.LOADING_STATE_READY
                        and status.extraction.pending == 0 and status.counts.embedded > 0):
                    return
                time.sleep(0.3)
        raise TimeoutError(f"trainer at {self.addr} still extracting after {timeout}s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture(scope="session")
def trainer(tmp_path_factory: pytest.TempPathFactory, feature_addr: str,
            manifest: Manifest) -> Iterator[TrainerProcess]:
    service = TrainerProcess(tmp_path_factory.mktemp("trainer"), feature_addr, manifest).start()
    yield service
    service.stop()


class Gateway:
    """`python -m annotation_gateway` on a real port, for the browser."""

    def __init__(self, log_path: Path, trainer_addr: str, feature_addr: str,
                 extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ServiceProcess("annotation_gateway", {
            "GATEWAY_PORT": str(self.port), "GATEWAY_METRICS_PORT": "0",
            "GATEWAY_HOST": "127.0.0.1", "GATEWAY_TRAINER_ADDR": trainer_addr,
            "GATEWAY_FEATURE_ADDR": feature_addr, "GATEWAY_GRACE_S": "1",
            "GATEWAY_GRPC_TOKEN": rs.TOKENS["gateway"], "LOG_LEVEL": "WARNING",
            **(extra_env or {})}, log_path, port=self.port, http_health=self.url + "/healthz")

    def start(self, timeout: float = 30.0) -> Gateway:
        self.process.start()
        try:
            self.process.wait_healthy(timeout)
        except StartError:
            self.process.kill()
            raise
        return self

    def stop(self) -> None:
        self.process.stop()


def artifacts_dir() -> Path:
    path = Path(os.environ.get("HITL_ARTIFACTS", ROOT / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path
