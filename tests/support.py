"""Helpers the test tiers share: data location, free ports, and real service processes
(the supervisor of tools/supervisor.py, which `make run` and the benchmarks use too)."""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.probes import (
    free_port,  # noqa: F401 - tests take every helper from here
    grpc_serving,
    grpc_status,
)
from tools.supervisor import ServiceProcess, wait_until
from tools.supervisor import running as supervised

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HITL_TEST_DATA", ROOT.parent / "shared" / "data"))
TILES = DATA / "streetview-tiles"
PHOTOS = DATA / "photos"
OPENIMAGES = DATA / "openimages"
MODELS = ROOT / ".models"


def require_data(path: Path = DATA) -> Path:
    """Skips the calling test, with a clear reason, when the shared data is absent."""
    if not path.exists():
        pytest.skip(f"test data not found at {path} (the shared data folder beside the "
                    "checkout; set HITL_TEST_DATA to point elsewhere)")
    return path


def tiles_manifest(path: Path, positives: int, negatives: int,
                   prefix: str = "") -> dict[str, int]:
    """A trainer manifest of real street tiles (the first `positives` bicycles and
    `negatives` others, absolute paths, labelled); returns item id -> 0/1."""
    require_data(TILES)
    with open(TILES / "labels.csv") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["filename"])
    chosen = ([r for r in rows if r["label"] == "1"][:positives]
              + [r for r in rows if r["label"] == "0"][:negatives])
    truth = {}
    with open(path, "w") as f:
        f.write("id,location,label\n")
        for r in chosen:
            item_id = prefix + Path(r["filename"]).stem
            f.write(f"{item_id},{TILES / r['filename']},{r['label']}\n")
            truth[item_id] = int(r["label"])
    return truth


def tiles_by_class(path: Path, per_class: dict[str, int]) -> dict[str, str]:
    """A manifest of real street tiles with their `source_class` column (the first
    `per_class[c]` tiles filed under each class c, absolute paths, `label` 1 for
    bicycles); returns item id -> source class."""
    require_data(TILES)
    with open(TILES / "labels.csv") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["filename"])
    classes: dict[str, str] = {}
    with open(path, "w") as f:
        f.write("id,location,label,source_class\n")
        for name, count in per_class.items():
            for r in [r for r in rows if r["source_class"] == name][:count]:
                item_id = Path(r["filename"]).stem
                f.write(f"{item_id},{TILES / r['filename']},{r['label']},{name}\n")
                classes[item_id] = name
    return classes


def lite_feature_env(port: int, cache_dir: Path, **extra: str) -> dict[str, str]:
    """The settings of a `lite` feature service on `port` with its metrics port off, its
    cache in `cache_dir` and no timing of settings at start (tests/feature/test_lite.py
    measures them); `extra` (setting names as keywords) adds to or overrides them."""
    return {"FEATURE_PORT": str(port), "FEATURE_METRICS_PORT": "0", "FEATURE_EXTRACTOR": "lite",
            "FEATURE_CACHE_DIR": str(cache_dir), "FEATURE_CALIBRATION_S": "0", **extra}


def require_lite_models() -> Path:
    if not (MODELS / "lite").exists():
        pytest.skip(f"lite models not found under {MODELS / 'lite'}: run `make models`")
    return MODELS / "lite"


def health_status(port: int, service: str = "", timeout: float = 2.0,
                  host: str = "127.0.0.1") -> int | None:
    """The standard health protocol's answer, or None when nothing answers."""
    return grpc_status(port, service, timeout, host)


def wait_serving(port: int, proc: subprocess.Popen | None = None, timeout: float = 180.0,
                 service: str = "", host: str = "127.0.0.1") -> None:
    """Until `port` answers SERVING for `service`; fails when `proc` exits first."""
    wait_until(lambda: grpc_serving(port, service, host), proc, timeout, f"port {port}")


@contextlib.contextmanager
def running(module: str, env: dict[str, str], log_path: Path, port: int,
            timeout: float = 180.0, host: str = "127.0.0.1") -> Iterator[ServiceProcess]:
    """`python -m <module>`, SERVING on `host`:`port` for the duration of the block."""
    with supervised(ServiceProcess(module, env, log_path, port=port, host=host),
                    timeout) as service:
        yield service
