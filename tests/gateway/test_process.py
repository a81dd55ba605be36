"""`python -m annotation_gateway` as a process: configuration errors, metrics, shutdown."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from tests.gateway.conftest import Gateway
from tests.support import ROOT, free_port


def test_a_malformed_setting_exits_naming_the_variable_and_an_example():
    result = subprocess.run([sys.executable, "-m", "annotation_gateway"], cwd=ROOT,
                            env={"GATEWAY_PORT": "eighty", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "GATEWAY_PORT" in result.stderr and "for example GATEWAY_PORT=8080" in result.stderr
    short = subprocess.run([sys.executable, "-m", "annotation_gateway"], cwd=ROOT,
                           env={"GATEWAY_TOKEN": "short", "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and "GATEWAY_TOKEN" in short.stderr


def test_metrics_are_served_on_their_own_port_and_sigterm_stops_cleanly(tmp_path):
    metrics_port = free_port()
    dead = f"127.0.0.1:{free_port()}"
    gateway = Gateway(tmp_path / "gateway.log", dead, dead,
                      {"GATEWAY_METRICS_PORT": str(metrics_port)}).start()
    try:
        with urllib.request.urlopen(gateway.url + "/healthz", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'gateway_http_requests_total{method="GET",route="/healthz",status="200"}' in text
        assert "gateway_trainer_watch_up 0.0" in text
    finally:
        assert gateway.process.stop(timeout=15) == 0
