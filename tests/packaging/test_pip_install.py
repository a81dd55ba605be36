"""`pip install .` into a fresh venv provides the packages and the console scripts, which
answer `--help` from outside the checkout. The dependencies are not installed again: the
venv sees this environment's site-packages through a .pth file (installing torch would
take minutes); the package itself is built and installed for real."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = ("hitl", "feature_service", "trainer_service", "annotation_gateway", "tools")
SCRIPTS = ("hitl-feature", "hitl-trainer", "hitl-gateway", "hitl-run")


def source_copy(folder: Path) -> Path:
    """The files a build reads, copied so that the build leaves nothing in the checkout."""
    folder.mkdir()
    shutil.copy(ROOT / "pyproject.toml", folder)
    shutil.copy(ROOT / "README.md", folder)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, folder / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return folder


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / "hitl" / "v1" / "__init__.py").exists():
        pytest.skip("no generated stubs: run `make install`")
    tmp = tmp_path_factory.mktemp("pip-install")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], check=True,
                             capture_output=True, text=True).stdout.strip()
    # Appended to sys.path: the installed package comes first, the dependencies after.
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--disable-pip-version-check", "-q", str(source_copy(tmp / "src"))],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


def test_the_packages_are_installed_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    code = ("import importlib, sys\n"
            f"for name in {PACKAGES!r} + ('hitl.v1.trainer_pb2', 'annotation_gateway.server'):\n"
            "    print(importlib.import_module(name).__file__)\n"
            "import importlib.resources as r\n"
            "print(r.files('annotation_gateway').joinpath('openapi.json').is_file())\n")
    done = subprocess.run([venv / "bin" / "python", "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *files, openapi = done.stdout.split()
    assert all(f.startswith(str(venv)) for f in files), files
    assert openapi == "True"


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_scripts_answer_help(venv: Path, tmp_path: Path, script: str) -> None:
    done = subprocess.run([venv / "bin" / script, "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script}")
    if script != "hitl-run":
        assert "environment variables" in done.stdout
