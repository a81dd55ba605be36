"""`python -m bench.precision` runs the trained lite models on real tiles in float32 and
under bfloat16 autocast and reports figures computed from both sets of vectors."""

import pytest

import bench.precision as precision
from bench.features import tile_set
from bench.untrained import untrained_resnext_frcnn
from tests.support import TILES, require_data, require_lite_models

pytestmark = pytest.mark.slow  # minutes of CPU: in `make test`, not `make test-fast`

TILE_COUNT = 20  # 5 bicycles: the fewest for the 5-fold probe; two batches


@pytest.fixture(scope="module")
def lite_result():
    """One measurement of the lite models, shared: it is the slow part of these tests."""
    require_data(TILES)
    require_lite_models()
    result = precision.run(short=True, count=TILE_COUNT)
    if result.get("status") == "skipped":
        pytest.skip(result["reason"])
    return result


def test_reports_what_bfloat16_changes_on_real_tiles(lite_result):
    result = lite_result

    assert result["images"] == TILE_COUNT and result["bicycles"] == TILE_COUNT // 4
    assert isinstance(result["bf16_native"], bool)
    assert ("bf16_note" in result) is not result["bf16_native"]
    # bfloat16 really ran: the vectors differ, by a little.
    assert result["vectors_identical"] is False
    assert result["embedding_max_abs_diff"] > 0
    cosine = result["embedding_cosine"]
    assert 0.9 < cosine["min"] <= cosine["mean"] <= 1.0
    score = result["bicycle_score_abs_diff"]
    assert 0.0 <= score["mean"] <= score["max"] <= 1.0
    for key in ("images_crossing_threshold_differently", "images_with_a_different_count",
                "probe_predictions_that_differ"):
        assert 0 <= result[key] <= TILE_COUNT, key
    over = result["images_over_threshold"]
    assert abs(over["float32"] - over["bfloat16"]) <= result[
        "images_crossing_threshold_differently"]
    assert all(0.0 <= f1 <= 1.0 for f1 in result["probe_f1"].values())
    for mode in ("float32", "bfloat16"):
        times = result["seconds_per_image"][mode]
        assert times["embedder"] > 0 and times["detector"] > 0
        assert times["both"] == pytest.approx(times["embedder"] + times["detector"], abs=1e-4)
    assert result["bfloat16_speedup"] > 0

    table = precision.markdown(result)
    assert f"| probe F1 (fp32 / bf16) | {result['probe_f1']['float32']} /" in table


def test_reports_what_the_int8_lite_models_change_and_whether_they_pass(lite_result):
    int8 = lite_result["lite_int8"]
    if int8.get("status") == "skipped":
        pytest.skip(int8["reason"])
    assert int8["images"] == TILE_COUNT and "+int8-" in int8["version"]
    assert int8["vectors_identical"] is False  # int8 really ran
    assert 0.5 < int8["embedding_cosine"]["min"] <= int8["embedding_cosine"]["mean"] <= 1.0
    assert int8["accepted"] == (abs(int8["f1_change"]) <= 0.005
                                and int8["decision_flip_share"] <= 0.01)
    assert int8["int8_speedup"] > 0
    assert "lite int8: accepted" in precision.markdown(lite_result)


def test_compares_resnext50_frcnn_in_float32_and_reduced_precision(lite_result):
    # Random weights at a small detector size stand in for the pretrained ones, which
    # are absent here: this checks the comparison, not the model's accuracy.
    require_data(TILES)

    def build(device, settings):
        return untrained_resnext_frcnn(device, 96, settings)

    result = precision.resnext_effect(*tile_set(20), build=build)
    if result.get("status") == "skipped":
        pytest.skip(result["reason"])
    assert result["images"] == 20 and result["bicycles"] == 5
    assert result["vectors_identical"] is False
    assert 0.99 < result["embedding_cosine"]["min"] <= 1.0
    assert set(result["probe_f1"]) == {"float32", "bfloat16"}
    assert "resnext50-frcnn" in precision.markdown({**lite_result, "resnext50_frcnn": result})


def test_skips_with_a_reason_without_the_tiles(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "TILES", tmp_path / "absent")
    result = precision.run(short=True, count=TILE_COUNT)
    assert result["status"] == "skipped" and str(tmp_path / "absent") in result["reason"]
    assert "skipped" in precision.markdown(result)


def test_refuses_a_count_too_small_for_the_probe():
    require_data(TILES)
    with pytest.raises(ValueError, match="too few"):
        precision.run(short=True, count=8)
