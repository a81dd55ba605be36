"""Every entry point answers `--help` with its usage and the environment variables it
reads, and exits 0 without starting to serve."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from hitl.config import rows
from tests.support import ROOT

SERVICES = ("feature_service", "trainer_service", "annotation_gateway")


@pytest.mark.parametrize("module", SERVICES)
def test_service_help_lists_its_variables_and_exits(module: str) -> None:
    # A port that is taken would not matter: nothing may be started.
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {module}")
    config = importlib.import_module(f"{module}.config").Config
    for env, default, _ in rows(config):
        assert f"{env} [{default}]" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("module", SERVICES)
def test_service_refuses_an_unknown_argument(module: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--port", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr


def test_make_run_help() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.run_local", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--dataset" in done.stdout and "--extractor" in done.stdout


def test_the_gateway_loads_no_torch() -> None:
    """Its image and `pip install .[gateway]` carry no torch: it must never import it."""
    code = ("import sys, annotation_gateway.__main__, annotation_gateway.server\n"
            "print(sorted({'torch', 'numpy', 'PIL'} & set(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
