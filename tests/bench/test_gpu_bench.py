"""`make bench-gpu`'s code, run on the CPU: no GPU is lent here, so the same paths (the
extractor alone in each way of computing, the service with its models in the service
process and decoding in worker processes) run with small counts. The compiled trunks are
left out here: tests/feature/test_extractors.py compiles them and checks their vectors."""

import pytest

from bench import features, gpu
from tests.support import TILES, require_data


def test_the_gpu_benchmark_runs_its_measurements_on_the_cpu(monkeypatch, tmp_path):
    require_data(TILES)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.setitem(features.COUNTS, "resnext50-frcnn", {True: (4, 2), False: (4, 2)})
    monkeypatch.setenv("FEATURE_CALIBRATION_S", "3")  # a short calibration, still measured
    # The detector at a small input size: the same paths, measured in seconds.
    monkeypatch.setenv("BENCH_UNTRAINED_MIN_SIZE", "96")
    # Random weights at a small detector size keep the rest quick.
    rows = gpu.extractor_alone("cpu", batch=2, seconds=0.1, deadline=float("inf"), count=2,
                               min_size=96, compiled=False)
    assert [row["way"] for row in rows] == ["demo: float32, contiguous",
                                            "bfloat16, channels_last"]
    assert all(row["images_per_s"] > 0 for row in rows)
    assert rows[0]["vs_demo"] == 1.0

    monkeypatch.setattr(gpu, "BUDGET_S", 0.0)  # the extractor table only starts its first row
    result = gpu.run(short=True, device="cpu", batch=2, seconds=0.1)
    assert [row["images_per_s"] is None for row in result["extractor_alone"]][1:] == [True, True]
    assert result["extractor_alone"][2]["way"] == "bfloat16, channels_last, compiled"
    service = result["service"]
    assert service["version"].startswith("untrained") and service["cold_images_per_s"] > 0
    # Ratios are given to two decimals: within half a hundredth.
    assert service["cold_vs_baseline"] == pytest.approx(
        service["cold_images_per_s"] / service["baseline_images_per_s"], rel=0.02, abs=0.005)
    assert service["settings"]["calibration"]
