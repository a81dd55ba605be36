"""A gateway process where annotators sign in with their tokens, for the auth tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability import stack as rs
from tools.supervisor import ServiceProcess

TOKEN = "reliability-token-0123"  # the annotator "tester"'s, an admin


@pytest.fixture(scope="session")
def guarded_gateway(tmp_path_factory: pytest.TempPathFactory, shared_trainer: ServiceProcess,
                    shared_feature: ServiceProcess) -> Iterator[ServiceProcess]:
    service = rs.gateway_service(tmp_path_factory.mktemp("guarded"), shared_trainer.address,
                                 shared_feature.address,
                                 GATEWAY_ANNOTATOR_TOKENS=f"tester={TOKEN}",
                                 GATEWAY_ADMINS="tester")
    rs.start(service)
    yield service
    service.stop()
