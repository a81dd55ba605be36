"""Every service: starts on port 0 in-process and on a real port as a subprocess, reports
SERVING through the standard health protocol, answers reflection, logs JSON lines, stops
gracefully on SIGTERM within its grace period, and refuses a bad configuration value."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hitl.config import load
from tests.support import (
    DATA,
    ROOT,
    ServiceProcess,
    free_port,
    lite_feature_env,
    require_lite_models,
    running,
    tiles_manifest,
    wait_serving,
)

GRACE_S = 3.0


def _manifest(tmp: Path, rows: int = 40) -> Path:
    # Both classes, so the stratified split has validation and evaluation items.
    path = tmp / "manifest.csv"
    tiles_manifest(path, 10, rows - 10)
    return path


def feature_env(tmp: Path, port: int) -> dict[str, str]:
    require_lite_models()
    return lite_feature_env(port, tmp / "cache", FEATURE_GRACE_S=str(GRACE_S))


def trainer_env(tmp: Path, port: int) -> dict[str, str]:
    # The feature service is absent on purpose: the trainer must serve without it.
    return {"TRAINER_PORT": str(port), "TRAINER_METRICS_PORT": "0",
            "TRAINER_DATASET": str(_manifest(tmp)),
            "TRAINER_DATASET_ROOTS": str(DATA), "TRAINER_DATA_DIR": str(tmp / "trainer"),
            "TRAINER_FEATURE_ADDR": f"127.0.0.1:{free_port()}",
            "TRAINER_GRACE_S": str(GRACE_S)}


GRPC_SERVICES = {
    "feature_service": (feature_env, "hitl.v1.FeatureService", "FEATURE_PORT"),
    "trainer_service": (trainer_env, "hitl.v1.TrainerService", "TRAINER_PORT"),
}


def _reflected_services(port: int) -> set[str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
        return {s.name for s in reply.list_services_response.service}


@pytest.mark.parametrize("module", sorted(GRPC_SERVICES))
def test_subprocess_serves_reflects_logs_json_and_stops_on_sigterm(module, tmp_path):
    make_env, service_name, _ = GRPC_SERVICES[module]
    port = free_port()
    env = {**make_env(tmp_path, port), "LOG_LEVEL": "INFO"}
    with running(module, env, tmp_path / f"{module}.log", port) as service:
        wait_serving(port, service.popen, service=service_name, timeout=60)
        assert service_name in _reflected_services(port)
        assert "grpc.health.v1.Health" in _reflected_services(port)
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.popen is not None
        code = service.popen.wait(GRACE_S + 15)
        took = time.monotonic() - started
    assert code == 0, service.log()[-2000:]
    assert took < GRACE_S + 15
    lines = [json.loads(line) for line in service.log().splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert "listening" in events and "serving" in events and "stopped" in events
    assert all({"time", "level", "service", "event"} <= set(line) for line in lines)


@pytest.mark.parametrize("module", sorted(GRPC_SERVICES))
async def test_in_process_on_port_zero(module, tmp_path):
    make_env, service_name, _ = GRPC_SERVICES[module]
    env = make_env(tmp_path, 0)
    config_cls = __import__(f"{module}.config", fromlist=["Config"]).Config
    build = __import__(f"{module}.server", fromlist=["build_service"]).build_service
    service = build(load(config_cls, env))
    assert service.port > 0
    await service.start()
    try:
        await asyncio.wait_for(service.wait_ready(), 120)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service_name),
                                     timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await service.stop(1.0)


@pytest.mark.parametrize("module,env", [
    ("feature_service", {"FEATURE_PORT": "fifty"}),
    ("feature_service", {"FEATURE_EXTRACTOR": "nonexistent"}),
    ("trainer_service", {"TRAINER_DEBOUNCE_S": "soon"}),
    ("annotation_gateway", {"GATEWAY_PORT": "80a"}),
])
def test_bad_configuration_exits_non_zero_naming_the_variable(module, env):
    result = subprocess.run([sys.executable, "-m", module], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**_base_env(), **env})
    assert result.returncode != 0
    variable = next(iter(env))
    assert variable in result.stderr
    assert "for example" in result.stderr


def _base_env() -> dict[str, str]:
    import os
    return {k: v for k, v in os.environ.items() if not k.startswith(
        ("FEATURE_", "TRAINER_", "GATEWAY_"))}


def test_gateway_serves_health_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {"GATEWAY_PORT": str(port), "GATEWAY_METRICS_PORT": "0",
           "GATEWAY_HOST": "127.0.0.1", "GATEWAY_GRACE_S": str(GRACE_S),
           "GATEWAY_TRAINER_ADDR": f"127.0.0.1:{free_port()}",
           "GATEWAY_FEATURE_ADDR": f"127.0.0.1:{free_port()}"}
    gateway = ServiceProcess("annotation_gateway", env, tmp_path / "gateway.log",
                             http_health=f"http://127.0.0.1:{port}/healthz").start()
    try:
        gateway.wait_healthy(timeout=60)
        started = time.monotonic()
        gateway.signal(signal.SIGTERM)
        assert gateway.popen is not None
        assert gateway.popen.wait(GRACE_S + 15) == 0, gateway.log()[-2000:]
        assert time.monotonic() - started < GRACE_S + 15
    finally:
        gateway.kill()
