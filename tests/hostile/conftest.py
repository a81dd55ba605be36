"""A gateway process with an access token, for the auth tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability import stack as rs
from tools.supervisor import ServiceProcess

TOKEN = "reliability-token-0123"


@pytest.fixture(scope="session")
def guarded_gateway(tmp_path_factory: pytest.TempPathFactory, shared_trainer: ServiceProcess,
                    shared_feature: ServiceProcess) -> Iterator[ServiceProcess]:
    service = rs.gateway_service(tmp_path_factory.mktemp("guarded"), shared_trainer.address,
                                 shared_feature.address, GATEWAY_TOKEN=TOKEN)
    rs.start(service)
    yield service
    service.stop()
