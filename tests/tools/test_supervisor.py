"""The one process supervisor (tools/supervisor.py), on tiny stand-in services: health by
HTTP and by the gRPC health protocol, a clear error with the log when a service dies
before serving, and SIGKILL when SIGTERM is ignored."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tools.probes import free_port
from tools.supervisor import ServiceProcess, StartError, running, stop_all

HTTP_SERVICE = """
import http.server, os
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])),
                       http.server.SimpleHTTPRequestHandler).serve_forever()
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(60)
"""
SLEEPS = """
import time
time.sleep(60)
"""
DIES = """
import sys
print("cannot start: no such model", flush=True)
sys.exit(3)
"""


def stand_in(tmp_path: Path, name: str, code: str, **kwargs) -> ServiceProcess:  # type: ignore[no-untyped-def]
    (tmp_path / f"{name}.py").write_text(code)
    return ServiceProcess(name, kwargs.pop("env", {}), tmp_path / f"{name}.log",
                          cwd=tmp_path, **kwargs)


def test_http_health_memory_and_a_clean_stop(tmp_path: Path) -> None:
    port = free_port()
    service = stand_in(tmp_path, "web", HTTP_SERVICE, env={"PORT": str(port)},
                       http_health=f"http://127.0.0.1:{port}/")
    with running(service, timeout=30) as started:
        assert started.healthy() and started.running()
    assert not service.running()
    assert service.popen is not None and service.popen.returncode == -signal.SIGTERM
    assert service.peak_mib is not None and service.peak_mib > 1


def test_a_service_that_dies_before_serving_is_reported_with_its_log(tmp_path: Path) -> None:
    service = stand_in(tmp_path, "dies", DIES, port=free_port())
    with pytest.raises(StartError) as failed, running(service, timeout=30):
        pass
    assert "exited with 3" in str(failed.value)
    assert "no such model" in str(failed.value)


def test_a_service_not_healthy_in_time_is_stopped(tmp_path: Path) -> None:
    service = stand_in(tmp_path, "sleeps", SLEEPS, port=free_port())
    with pytest.raises(StartError, match="not healthy after 1s"), running(service, timeout=1):
        pass
    assert not service.running()


def test_sigterm_ignored_means_sigkill_after_the_grace(tmp_path: Path) -> None:
    service = stand_in(tmp_path, "stubborn", STUBBORN).start()
    deadline = time.monotonic() + 30
    while "ignoring" not in service.log():
        assert time.monotonic() < deadline, service.log()
        time.sleep(0.05)
    started = time.monotonic()
    assert service.stop(timeout=1) == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_stop_all_stops_every_service(tmp_path: Path) -> None:
    services = [stand_in(tmp_path, f"web{i}", HTTP_SERVICE, env={"PORT": str(free_port())})
                .start() for i in range(2)]
    stop_all(services, timeout=10)
    assert not any(s.running() for s in services)
