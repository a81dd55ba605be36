"""`python -m tools.run_local` (what `make run` runs) with no dataset or extractor, on
free ports: without the resnext50-frcnn weights it says it runs the offline demo, prints
the page's URL, the page answers, and SIGTERM stops all three services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tests.support import ROOT, free_port, require_data, require_lite_models
from tools.run_choice import DEMO_TILES

START_S = 300


def test_no_arguments_bring_up_the_offline_demo_page(tmp_path: Path) -> None:
    require_data(ROOT / DEMO_TILES)  # where `make run` looks, beside the checkout
    require_lite_models()
    port = free_port()
    env = {**os.environ, "FEATURE_PORT": str(free_port()), "TRAINER_PORT": str(free_port()),
           "FEATURE_METRICS_PORT": "0", "TRAINER_METRICS_PORT": str(free_port()),
           "GATEWAY_METRICS_PORT": "0", "LOG_LEVEL": "WARNING",
           # No resnext50-frcnn weights, whatever this machine's cache holds, so that the
           # choice is the demo even where Open Images can be reached.
           "TORCH_HOME": str(tmp_path / "torch"),
           # Few items embedded: the page is the point here, not the extraction.
           "TRAINER_PREFETCH": "16", "PYTHONUNBUFFERED": "1"}
    env.pop("TRAINER_OPENIMAGES_SOURCE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.run_local", "--port", str(port),
         "--state", str(tmp_path / "state")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        url = f"http://localhost:{port}/"
        deadline = time.monotonic() + START_S
        while not any(url in line for line in lines):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
        notes = [line for line in lines if "offline demo" in line]
        assert len(notes) == 1 and "lite" in notes[0], "".join(lines)
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
            assert "<html" in page.read().decode().lower()
        with urllib.request.urlopen(f"{url}api/status", timeout=10) as status:
            assert b'"display_name"' in status.read()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(90)
        reader.join(5)
    assert code == 0, "".join(lines)
    assert "stopping" in "".join(lines)
