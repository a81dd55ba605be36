"""`python -m tools.run_local` (what `make run` runs) on free ports. With no dataset or
extractor: without the resnext50-frcnn weights it says it runs the offline demo, prints
the page's URL, the page answers, and SIGTERM stops all three services. With a tasks file
(`make run TASKS=...`): every task it names answers at its own address."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support import ROOT, free_port, require_data, require_lite_models
from tools.run_choice import DEMO_TILES

START_S = 300
TASKS_FILE = ROOT / "docs" / "examples" / "tiles-tasks.toml"


@contextlib.contextmanager
def launched(tmp_path: Path, *args: str) -> Iterator[tuple[str, list[str]]]:
    """tools.run_local with `args`, until its page's URL is printed: (that URL, the lines
    it printed so far and goes on printing). Stopped with SIGTERM, which must end it
    cleanly."""
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
         "--state", str(tmp_path / "state"), *args],
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
        yield url, lines
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(90)
        reader.join(5)
    assert code == 0, "".join(lines)
    assert "stopping" in "".join(lines)


def test_no_arguments_bring_up_the_offline_demo_page(tmp_path: Path) -> None:
    with launched(tmp_path) as (url, lines):
        notes = [line for line in lines if "offline demo" in line]
        assert len(notes) == 1 and "lite" in notes[0], "".join(lines)
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
            # The one task of the settings, at its own address.
            assert page.url.endswith("/t/default/")
            assert "<html" in page.read().decode().lower()
        with urllib.request.urlopen(f"{url}api/status", timeout=10) as status:
            assert b'"display_name"' in status.read()


def read_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.load(response))


def test_a_tasks_file_brings_up_every_task_it_names_at_its_own_address(
        tmp_path: Path) -> None:
    with launched(tmp_path, "--tasks", str(TASKS_FILE)) as (url, lines):
        assert any(f"{url}tasks" in line for line in lines), "".join(lines)
        listed = read_json(f"{url}api/tasks")
        assert [t["name"] for t in listed["tasks"]] == ["bicycle", "hydrant", "crosswalk",
                                                        "bus"]
        assert listed["default"] == "bicycle"
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.url.endswith("/t/bicycle/")
        deadline = time.monotonic() + START_S
        while True:  # the other tasks start in the background
            try:
                status = read_json(f"{url}t/hydrant/api/status")
                break
            except urllib.error.HTTPError as exc:
                assert exc.code == 503 and time.monotonic() < deadline, exc
                time.sleep(1)
        assert (status["task"], status["display_name"]) == ("hydrant", "Fire hydrant")
        assert status["question"] == "Is there a fire hydrant in this image?"
        with urllib.request.urlopen(f"{url}t/bus/", timeout=10) as page:
            assert page.status == 200
