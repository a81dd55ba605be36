"""The simulator's arithmetic: labels to reach a level, area under the curve, the
verdict against random sampling, and the chart files."""

import pytest

from bench import curves


def test_labels_to_reach_is_the_first_point_at_or_above_the_level():
    curve = [(25, 0.4), (50, 0.72), (75, 0.65), (100, 0.86)]
    assert curves.labels_to_reach(curve, 0.6) == 50
    assert curves.labels_to_reach(curve, 0.72) == 50
    assert curves.labels_to_reach(curve, 0.85) == 100
    assert curves.labels_to_reach(curve, 0.9) is None


def test_area_is_the_mean_f1_from_the_first_label_with_none_before_the_first_model():
    assert curves.mean_f1_area([(0, 0.0), (100, 1.0)]) == pytest.approx(0.5)
    # No model for the first 25 labels: a quarter of the span at F1 0.
    assert curves.mean_f1_area([(25, 0.8), (100, 0.8)]) == pytest.approx(0.6)
    # A run that stopped early keeps its last F1 up to the budget.
    assert curves.mean_f1_area([(0, 0.0), (50, 1.0)], budget=100) == pytest.approx(0.75)
    assert curves.mean_f1_area([]) == 0.0


def rows(strategy, seed, f1s, step=25):
    return [{"strategy": strategy, "seed": seed, "labels": step * (i + 1), "f1": f}
            for i, f in enumerate(f1s)]


def test_summary_averages_over_seeds_and_reports_misses():
    data = (rows("default", 0, [0.65, 0.82, 0.86]) + rows("default", 1, [0.55, 0.75, 0.9])
            + rows("random", 0, [0.3, 0.61, 0.7]) + rows("random", 1, [0.2, 0.5, 0.81]))
    by_name = {s.strategy: s for s in curves.summarise(curves.curves_by_run(data), 75)}
    default, random = by_name["default"], by_name["random"]
    assert default.seeds == 2
    assert default.reach[0.6].per_seed == (25, 50)
    assert default.reach[0.6].mean == pytest.approx(37.5)
    assert default.reach[0.6].text() == "38 (25-50)"
    assert random.reach[0.8].text() == "1/2 seeds (75; not the others)"
    assert random.reach[0.85].text() == "not reached"
    assert default.final_f1 == pytest.approx(0.88)
    verdict = curves.beats(default, random)
    # Neither reaches 0.89 on every seed: not beaten.
    assert verdict == {0.6: True, 0.7: True, 0.8: True, 0.85: True, 0.89: False}
    assert not any(curves.beats(random, default).values())
    table = curves.table_markdown([default, random], ceiling=0.9)
    assert "| default | 2 | 38 (25-50) |" in table
    assert "ceiling" in table and "0.900" in table


def test_chart_is_written_as_png_and_svg(tmp_path):
    data = rows("default", 0, [0.5, 0.8]) + rows("default", 1, [0.6, 0.9])
    paths = [tmp_path / "f1.png", tmp_path / "f1.svg"]
    curves.plot(curves.curves_by_run(data), paths, "test", ceiling=0.9)
    assert paths[0].read_bytes().startswith(b"\x89PNG")
    svg = paths[1].read_text()
    assert "<svg" in svg and "target F1 0.85" in svg


def test_a_seed_without_any_model_counts_as_a_miss_not_as_a_missing_run():
    data = rows("random", 1, [0.9, 0.9, 0.9])
    runs = curves.with_every_seed(curves.curves_by_run(data), ["random", "default"], [0, 1])
    assert runs["random"][0] == [] and runs["default"] == {0: [], 1: []}
    random = {s.strategy: s for s in curves.summarise(runs, 75)}["random"]
    assert random.seeds == 2 and random.reach[0.85].text() == "1/2 seeds (25; not the others)"
    assert random.area == pytest.approx((0.0 + curves.mean_f1_area(runs["random"][1], 75)) / 2)


def test_ratio_counts_a_baseline_miss_as_the_budget_and_its_interval_spans_the_seeds():
    mine = curves.StrategySummary("default", 3, {0.85: curves.Reach((20, 30, 25))}, 0.8, 0.9)
    theirs = curves.StrategySummary("random", 3, {0.85: curves.Reach((50, 150, None))},
                                    0.6, 0.8)
    assert curves.ratio(mine, theirs, 0.85, 300) == pytest.approx(25 / ((50 + 150 + 300) / 3))
    low, high = curves.ratio_interval(mine, theirs, 0.85, 300)
    # The extremes: the candidate's best seed over the baseline's worst, and the reverse.
    assert 20 / 300 <= low < curves.ratio(mine, theirs, 0.85, 300) < high <= 30 / 50
    assert high - low > 0.2  # three seeds this far apart leave the ratio uncertain
    same = curves.StrategySummary("random", 3, {0.85: curves.Reach((100, 100, 100))}, 0.6, 0.8)
    steady = curves.StrategySummary("default", 3, {0.85: curves.Reach((25, 25, 25))}, 0.8, 0.9)
    assert curves.ratio_interval(steady, same, 0.85, 300) == pytest.approx((0.25, 0.25))
    missed = curves.StrategySummary("default", 3, {0.85: curves.Reach((25, None, 25))}, 0.8, 0.9)
    assert curves.ratio_interval(missed, same, 0.85, 300) is None
