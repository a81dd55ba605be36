"""`bench.lite_stages` times the `lite` extractor's stages on real tiles with the real
models and bounds what a service around them could do on this machine's cores."""

import pytest

from bench import lite_stages
from tests.support import TILES, require_data, require_lite_models

pytestmark = pytest.mark.slow  # tens of seconds of CPU: in `make test`, not `make test-fast`

STAGES = {"decode", "resize_embedder", "resize_detector", "to_floats", "embedder",
          "detector", "evidence"}


def test_every_stage_is_timed_and_the_ceiling_is_what_they_leave():
    require_data(TILES)
    require_lite_models()
    result = lite_stages.measure(count=6, batch=2, baseline_s=1.0)
    stages = result["ms_per_image_one_thread"]
    assert set(stages) == STAGES and all(ms > 0 for ms in stages.values())
    assert result["sum_ms_per_image"] == pytest.approx(sum(stages.values()), abs=0.01)
    assert result["ceiling_images_per_s"] == pytest.approx(
        result["cores"] * 1e3 / result["sum_ms_per_image"], rel=0.01)
    # Ratios are given to two decimals: within half a hundredth.
    assert result["ceiling_vs_baseline"] == pytest.approx(
        result["ceiling_images_per_s"] / result["baseline_images_per_s"], rel=0.02, abs=0.005)
    # The two models are the largest stages of all (the resizes and the rest are small).
    assert min(stages["embedder"], stages["detector"]) > max(
        ms for name, ms in stages.items() if name not in ("embedder", "detector"))
    assert result["precision"] in ("int8", "float32") and result["images"] == 6
