"""`python -m annotation_gateway` as a process: configuration errors, metrics, shutdown."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
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
                           env={"GATEWAY_ANNOTATOR_TOKENS": "alice=short",
                                "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and "GATEWAY_ANNOTATOR_TOKENS" in short.stderr
    assert "short" not in short.stderr  # a secret setting is never echoed


def _refusal(**env: str) -> str:
    """What `python -m annotation_gateway` says when it refuses to start with `env`."""
    result = subprocess.run([sys.executable, "-m", "annotation_gateway"], cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", "GATEWAY_PORT": str(free_port()),
                                 "GATEWAY_METRICS_PORT": "0", **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: "), lines
    return lines[0]


def test_any_but_a_loopback_bind_needs_annotator_tokens_a_secret_and_host_names(tmp_path):
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        line = _refusal(GATEWAY_HOST=host)
        assert f"GATEWAY_HOST={host} is not a loopback address" in line
        assert "GATEWAY_ANNOTATOR_TOKENS" in line
    tokens = {"GATEWAY_HOST": "0.0.0.0", "GATEWAY_ANNOTATOR_TOKENS": "alice=alice-token-0123456"}
    assert "GATEWAY_SESSION_SECRET" in _refusal(**tokens)
    secret = {**tokens, "GATEWAY_SESSION_SECRET": "k" * 32}
    assert "GATEWAY_ALLOWED_HOSTS" in _refusal(**secret)
    assert "GATEWAY_ADMINS names carol" in _refusal(
        **secret, GATEWAY_ALLOWED_HOSTS="annotate.example.org", GATEWAY_ADMINS="carol")

    # Configured, it serves on every interface: to its own host name only, and only to
    # annotators who sign in.
    dead = f"127.0.0.1:{free_port()}"
    gateway = Gateway(tmp_path / "gateway.log", dead, dead, {
        **secret, "GATEWAY_ALLOWED_HOSTS": "annotate.example.org"}).start()
    try:
        def get(path: str, host: str) -> int:
            request = urllib.request.Request(gateway.url + path, headers={"Host": host})
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    return int(r.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert get("/api/session", "annotate.example.org") == 401
        assert get("/api/session", f"127.0.0.1:{gateway.port}") == 400
        assert get("/healthz", f"127.0.0.1:{gateway.port}") == 200
    finally:
        gateway.stop()


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
