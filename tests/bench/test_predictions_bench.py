"""`bench.predictions` on a tiny scale: the export through the gateway against the direct
gRPC stream, and one-image classification against the feature service's own Embed, with
real processes and real tiles."""

from bench import predictions
from tests.support import TILES, require_data, require_lite_models


def test_export_and_classify_are_measured_against_their_baselines():
    require_data(TILES)
    require_lite_models()
    export = predictions.export_part(short=True, rows=3000)
    assert export["rows"] == 3000 and export["dimension"] == 266
    for path in ("direct_grpc", "gateway_csv", "gateway_jsonl"):
        assert export[path]["rows_per_s"] > 0
    assert export["gateway_csv"]["mib"] > 0
    assert export["gateway_csv_vs_direct_grpc"] > 0
    assert export["peak_rss_mib"]["trainer"] > 0

    classify = predictions.classify_part(short=True, samples=4)
    assert classify["extractor"] == "lite"
    for path in ("feature_embed", "classify_end_to_end"):
        figures = classify[path]
        assert figures["count"] == 4 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert classify["overhead_p50"] == round(
        classify["classify_end_to_end"]["p50_ms"] / classify["feature_embed"]["p50_ms"] - 1, 3)
