"""`bench.features` measures `resnext50-frcnn` where its pretrained weights are absent (no
internet here): the real service around the same architectures with random weights,
against the float32 one-at-a-time baseline, both on real tiles."""

import pytest

from bench import baseline, features
from tests.support import TILES, require_data

pytestmark = pytest.mark.slow  # minutes of CPU: in `make test`, not `make test-fast`


def test_resnext50_frcnn_is_measured_with_random_weights_when_its_weights_are_absent(
        monkeypatch, tmp_path):
    require_data(TILES)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.setitem(features.COUNTS, "resnext50-frcnn", {True: (4, 2), False: (4, 2)})
    monkeypatch.setenv("FEATURE_CALIBRATION_S", "3")  # a short calibration, still measured
    # The detector at a small input size: the same paths, measured in seconds.
    monkeypatch.setenv("BENCH_UNTRAINED_MIN_SIZE", "96")
    result = features.measure("resnext50-frcnn", short=True)

    assert result["weights"].startswith("random") and "no-weights" in result["why"]
    assert result["version"].startswith("untrained")  # never mixed with real features
    assert result["device"] == "cpu" and result["service_images"] == 4
    assert result["cold_images_per_s"] > 0 and result["baseline_images_per_s"] > 0
    # Ratios are given to two decimals: within half a hundredth.
    assert result["cold_vs_baseline"] == pytest.approx(
        result["cold_images_per_s"] / result["baseline_images_per_s"], rel=0.02, abs=0.005)
    # The baseline ran before the service and after it; the ratio is against both.
    before, after = result["baseline_before_images_per_s"], result["baseline_after_images_per_s"]
    assert before > 0 and after > 0
    assert result["baseline_images_per_s"] == pytest.approx((before + after) / 2, rel=0.01)
    assert 1 <= result["cold_mean_batch"] <= 4  # Faster R-CNN's CPU batches: 1, 2 or 4
    settings = result["settings"]  # what the service measured at start, and from what
    assert settings["inference"] == "workers" and settings["calibration"]
    assert settings["max_batch"] in (1, 2, 4)
    assert result["warm_images_per_s"] > result["cold_images_per_s"]
    assert result["peak_rss_mib"] > 0
    assert "float16_vs_float32" not in result  # random features have no F1 to report
    assert "random weights" in features.markdown({"extractors": {"resnext50-frcnn": result}})


def test_the_baseline_around_the_service_is_the_mean_of_its_two_passes():
    before = {"baseline_images_per_s": 10.0, "baseline_cpu_s_per_image": 0.1}
    after = {"baseline_images_per_s": 12.0, "baseline_cpu_s_per_image": 0.08}
    assert baseline.around(before, after) == {
        "baseline_images_per_s": 11.0, "baseline_cpu_s_per_image": 0.09,
        "baseline_before_images_per_s": 10.0, "baseline_after_images_per_s": 12.0}
