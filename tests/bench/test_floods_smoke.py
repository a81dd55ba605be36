"""The floods benchmark against the real services, in a tiny shape: two annotators, a
few seconds a phase, a small classify flood and one EmbedStream of large images; it must
run whole and report every phase side by side with its ratios (the figures themselves
are for `make bench`, never asserted here)."""

import pytest

from bench import floods, stack
from tests.support import TILES, require_data, require_lite_models

TINY = floods.Shape(items=300, warm_up_s=2.0, seconds=3.0, annotators=2,
                    classify_requests=1, classify_images=2, classify_image_bytes=200_000,
                    stream_calls=1, stream_batch=2, stream_side=1500)


def test_the_floods_bench_reports_both_phases_and_their_ratios(tmp_path):
    if stack.missing_modules("feature_service", "trainer_service", "annotation_gateway"):
        pytest.skip("the services are not in this checkout yet")
    require_data(TILES)
    require_lite_models()
    result = floods.run(short=True, dataset=TILES / "labels.csv", cache=tmp_path,
                        shape=TINY)
    assert result["status"] == "ok"
    for phase in floods.PHASES:
        figures = result[phase]["annotators"]
        assert figures["labels"] > 0, result[phase]
        assert 0 < figures["next_image_p50_ms"] <= figures["next_image_p99_ms"]
        assert set(result[phase]["health"]) == {
            "gateway /healthz", "gateway /readyz", "trainer grpc health",
            "feature grpc health"}
    assert sum(result["flooded"]["classify_flood"]["answers"].values()) > 0
    assert result["flooded"]["stream_flood"]["results"] > 0
    assert result["ratios"]["flooded: next_image_p99_ms / alone before and after"] > 0
    assert result["ratios"]["drift: next_image_p99_ms alone, last / first"] > 0
    assert list(floods.PHASES)[::2] == ["alone", "alone_2", "alone_3", "alone_4"]
    assert "classify_flood" in result["classify_only"]
    assert "stream_flood" in result["stream_only"] and "classify_flood" not in result[
        "stream_only"]
    assert set(result["targets"]) >= {"next_image_p99_met", "health_met"}
    assert result["peak_rss_mib"]["gateway"]
