"""The simulator and the gateway benchmark against the real services: a tiny budget on a
few hundred real tiles, one seed, so CI exercises the whole path in well under a minute."""

import csv
import json

import pytest

from bench import gateway, simulate, stack
from tests.support import TILES, require_data, require_lite_models

ITEMS = 300


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One feature cache for the module: both tests use the same tiles, embedded once."""
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture
def stack_ready():
    missing = stack.missing_modules("feature_service", "trainer_service")
    if missing:
        pytest.skip(f"{', '.join(missing)} not in this checkout yet")
    require_data(TILES)
    require_lite_models()


def test_simulator_replays_real_tiles_through_the_real_services(stack_ready, cache, tmp_path):
    out = tmp_path / "out"
    code = simulate.main(["--limit", str(ITEMS), "--seeds", "1", "--budget", "50",
                          "--strategies", "default,random", "--out", str(out),
                          "--cache", str(cache), "--docs", str(tmp_path / "docs")])
    assert code == 0
    with (out / "curves.csv").open() as f:
        rows = list(csv.DictReader(f))
    runs = {r["strategy"] for r in rows}
    assert {"default", "full-pool"} <= runs <= {"default", "random", "full-pool"}
    for row in rows:
        assert 0.0 <= float(row["f1"]) <= 1.0
        assert 0.0 <= float(row["roc_auc"]) <= 1.0
        # Every model is scored on the same held-out split: half of 300, both classes.
        assert int(row["eval_positives"]) + int(row["eval_negatives"]) == 150
        assert int(row["eval_positives"]) >= 1
        # Every answer is a label: training, audit and gold.
        assert int(row["labels"]) == sum(int(row[k]) for k in ("training", "audit", "gold",
                                                               "repeats"))
    learning = [r for r in rows if r["strategy"] != "full-pool"]
    assert all(int(r["labels"]) % 5 == 0 and int(r["labels"]) <= 50 for r in learning)
    assert any(int(r["labels"]) == 50 for r in learning)
    # Unlabelled mode: no gold (the trainer knows no label), and once there is a model the
    # default mix spends some answers on the audit and shows an estimate.
    assert all(int(r["gold"]) == 0 for r in rows)
    default = [r for r in learning if r["strategy"] == "default"]
    assert int(default[-1]["audit"]) >= 1 and default[-1]["estimate_f1"] != ""
    assert float(default[-1]["estimate_low"]) <= float(default[-1]["estimate_f1"]) <= float(
        default[-1]["estimate_high"])
    (ceiling,) = [r for r in rows if r["strategy"] == "full-pool"]
    # The pool is the other 150; the audit reserve (a fifth of it) never trains.
    assert 100 <= int(ceiling["training"]) <= 140

    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 300 and summary["seeds"] == [0]
    assert summary["mode"] == "unlabelled"
    assert summary["ceiling_f1"] == pytest.approx(float(ceiling["f1"]))
    # The pool's positives only: the held-out split keeps its own.
    assert 0 < int(ceiling["positives_labelled"]) < summary["positives"]
    assert set(summary["default_beats_random"]) == {"0.6", "0.7", "0.8", "0.85", "0.89"}
    assert set(summary["backtest"]) == {"0.85", "0.9", "0.92"}
    assert summary["peak_rss_mib"]["feature"] > 0 and summary["peak_rss_mib"]["trainer"] > 0
    assert "| strategy | seeds |" in (tmp_path / "docs" / "simulate-summary.md").read_text()
    assert (tmp_path / "docs" / "simulate-f1.png").read_bytes().startswith(b"\x89PNG")
    assert "<svg" in (out / "f1.svg").read_text()

    # The table and chart can be made again from the CSV alone, with the same figures.
    table = (out / "summary.md").read_text()
    (out / "summary.md").unlink()
    assert simulate.main(["--limit", str(ITEMS), "--seeds", "1", "--budget", "50",
                          "--strategies", "default,random", "--out", str(out),
                          "--replot"]) == 0
    assert (out / "summary.md").read_text() == table


def test_gateway_benchmark_measures_latency_under_load(stack_ready, cache):
    if stack.missing_modules("annotation_gateway"):
        pytest.skip("annotation_gateway not in this checkout yet")
    # Three seconds a level: on a loaded 2-core machine the first lease alone can take
    # one, and a level that ends before its first annotation measures nothing.
    tiny = gateway.Shape(items=ITEMS, seconds_per_level=3.0, annotations_per_level=40,
                         levels=(1, 3))
    result = gateway.run(short=True, cache=cache, shape=tiny)
    assert result["status"] == "ok"
    assert result["grpc_direct_1"]["annotate"]["count"] > 0
    for level in ("1", "3"):
        figures = result["annotators"][level]
        assert figures["errors"] == {} and figures["empty_leases"] == 0
        assert figures["next_items"]["count"] > 0 and figures["annotate"]["count"] > 0
        assert 0 < figures["next_items"]["p50_ms"] <= figures["next_items"]["p99_ms"]
    assert "annotate p50, 3 annotators / direct gRPC" in result["ratios"]
    assert all(v and v > 0 for v in result["peak_rss_mib"].values())


def test_annotators_get_detector_guided_items_before_the_known_splits_are_embedded(
        stack_ready, tmp_path):
    """A labelled manifest 40% of which are validation and evaluation items: the first
    detector-guided items come while those splits are still a small background sample."""
    from bench import startup

    result = startup.measure(3000, tmp_path)
    assert "detector_guided_s" in result, result
    then = result["status_then"]
    known = then["validation_embedded"] + then["evaluation_embedded"]
    assert then["pool_embedded"] > 0 and then["pool_embedded"] >= 2 * known
    assert then["pending"] > 0  # the rest of the known splits still waits
