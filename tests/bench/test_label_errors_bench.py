"""bench.label_errors end to end on a few hundred real tiles: three runs (no errors,
errors, errors with review) through the real services, and a report that holds them."""

import json

import pytest

from bench import label_errors, stack
from tests.support import TILES, require_data, require_lite_models


def test_the_label_error_bench_runs_and_reports(tmp_path):
    if stack.missing_modules("feature_service", "trainer_service"):
        pytest.skip("the services are not in this checkout")
    require_data(TILES)
    require_lite_models()
    out = tmp_path / "out"
    code = label_errors.main(["--limit", "300", "--seeds", "1", "--budget", "60",
                              "--step", "30", "--error-rate", "0.2",
                              "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["final_f1"]) == {"clean", "noisy", "review"}
    assert all(0 <= f <= 1 for runs in summary["final_f1"].values() for f in runs)
    # No errors, no wrong labels; at a 20% error rate there are some to find.
    assert summary["errors_in_force"]["clean"] == [0]
    assert summary["errors_in_force"]["noisy"][0] > 0
    (top,) = summary["top_suspects"]
    assert 0 <= top["top_errors"] <= top["top"] <= top["flagged"] <= top["labels"]
    assert (out / "f1.png").read_bytes().startswith(b"\x89PNG")
    assert "| review |" in (out / "summary.md").read_text()
    # The report can be written again from the saved runs alone.
    assert label_errors.main(["--report", "--limit", "300", "--seeds", "1", "--budget", "60",
                              "--step", "30", "--error-rate", "0.2", "--out", str(out)]) == 0
