"""Where the metrics ports listen, on real trainer and gateway processes: on loopback
unless the service is told otherwise (`<SERVICE>_METRICS_HOST`; the Kubernetes manifests
say 0.0.0.0, and a NetworkPolicy opens the port to the scraper only)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from tests.reliability import stack as rs
from tests.support import free_port


def _outward_address() -> str:
    """An address of this machine that is not loopback (a datagram socket picks the
    interface without sending anything)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        address = str(probe.getsockname()[0])
    except OSError:
        address = ""
    finally:
        probe.close()
    if not address or address.startswith("127."):
        pytest.skip("this machine has no address besides loopback")
    return address


def _answers(host: str, port: int) -> bool:
    try:
        return requests.get(f"http://{host}:{port}/metrics", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_metrics_listen_on_loopback_unless_told_otherwise(shared_feature, tiles: Path,
                                                           tmp_path: Path):
    """Seen failing before: both metrics ports answered on every interface although the
    services' own hosts were 127.0.0.1."""
    outward = _outward_address()
    ports = {"trainer": free_port(), "gateway": free_port(), "open": free_port()}
    trainer = rs.trainer_service(tmp_path, shared_feature.address, tiles, name="trainer",
                                 TRAINER_HOST="127.0.0.1",
                                 TRAINER_METRICS_PORT=str(ports["trainer"]))
    opened = rs.trainer_service(tmp_path, shared_feature.address, tiles, name="opened",
                                TRAINER_METRICS_PORT=str(ports["open"]),
                                TRAINER_METRICS_HOST="0.0.0.0")
    rs.start(trainer)
    rs.start(opened)
    gateway = rs.gateway_service(tmp_path, trainer.address, shared_feature.address,
                                 GATEWAY_METRICS_PORT=str(ports["gateway"]))
    rs.start(gateway)
    try:
        for name in ("trainer", "gateway"):
            assert _answers("127.0.0.1", ports[name]), name
            assert not _answers(outward, ports[name]), f"{name} metrics answer on {outward}"
        assert _answers(outward, ports["open"])
    finally:
        gateway.stop()
        opened.stop()
        trainer.stop()
