"""A request id given to the gateway reaches the trainer's logs through gRPC metadata."""

from __future__ import annotations

import json
import time
import urllib.request

from tests.foundation.test_lifecycle import trainer_env
from tests.support import ServiceProcess, free_port, running


def test_request_id_travels_from_gateway_to_trainer(tmp_path):
    tport, gport = free_port(), free_port()
    with running("trainer_service", trainer_env(tmp_path, tport), tmp_path / "t.log",
                 tport) as trainer:
        gateway = ServiceProcess("annotation_gateway", {
            "GATEWAY_PORT": str(gport), "GATEWAY_METRICS_PORT": "0",
            "GATEWAY_HOST": "127.0.0.1", "GATEWAY_TRAINER_ADDR": f"127.0.0.1:{tport}",
            "GATEWAY_FEATURE_ADDR": f"127.0.0.1:{free_port()}"}, tmp_path / "g.log").start()
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{gport}/api/status",
                                             headers={"X-Request-Id": "rid-from-client-42"})
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(request, timeout=5) as reply:
                        assert reply.status == 200
                        break
                except OSError:
                    assert time.monotonic() < deadline, gateway.log()[-2000:]
                    time.sleep(0.3)
        finally:
            gateway.stop()
        lines = [json.loads(x) for x in trainer.log().splitlines() if x.startswith("{")]
    calls = [x for x in lines if x.get("request_id") == "rid-from-client-42"]
    assert calls, trainer.log()[-2000:]
    assert any(x.get("method", "").endswith("/GetStatus") for x in calls)
