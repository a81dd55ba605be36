"""Session fixtures of the reliability and hostile-input tiers (registered in
tests/conftest.py so that both tiers share one feature service per session)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability import stack as rs
from tools.supervisor import ServiceProcess

# Small enough that the feature cache's LMDB map fills up many times during a session
# (each time it must grow and carry on), while every test still gets its features.
MAP_BYTES = 64 * 1024
FEATURE_MAX_MESSAGE_BYTES = 4 << 20
TRAINER_MAX_MESSAGE_BYTES = 1 << 20
MANIFEST_ITEMS = 120


@dataclass
class Shape:
    """The short form runs in `make test`; the long form in `make reliability`."""

    long: bool

    def pick(self, short, long):  # type: ignore[no-untyped-def]
        return long if self.long else short


@pytest.fixture(scope="session")
def shape(request: pytest.FixtureRequest) -> Shape:
    return Shape(bool(request.config.getoption("--long")))


@pytest.fixture(scope="session")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rs.require_stack()
    return rs.tiles_manifest(tmp_path_factory.mktemp("tiles") / "tiles.csv", MANIFEST_ITEMS)


@pytest.fixture(scope="session")
def shared_feature(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One lite feature service for the tests that do not kill it."""
    rs.require_stack()
    state = tmp_path_factory.mktemp("feature")
    service = rs.feature_service(state, state / "cache",
                                 FEATURE_CACHE_MAP_BYTES=str(MAP_BYTES),
                                 FEATURE_MAX_MESSAGE_BYTES=str(FEATURE_MAX_MESSAGE_BYTES))
    rs.start(service)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def shared_trainer(tmp_path_factory: pytest.TempPathFactory, shared_feature: ServiceProcess,
                   tiles: Path) -> Iterator[ServiceProcess]:
    """A trainer with its pool embedded, for the tests that do not kill it."""
    state = tmp_path_factory.mktemp("trainer")
    service = rs.trainer_service(state, shared_feature.address, tiles,
                                 TRAINER_MAX_MESSAGE_BYTES=str(TRAINER_MAX_MESSAGE_BYTES))
    rs.start(service)
    rs.wait_status(service.address, rs.embedded, what="pool embedded")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory, shared_trainer: ServiceProcess,
                   shared_feature: ServiceProcess) -> Iterator[ServiceProcess]:
    service = rs.gateway_service(tmp_path_factory.mktemp("gateway"), shared_trainer.address,
                                 shared_feature.address)
    rs.start(service)
    yield service
    service.stop()
