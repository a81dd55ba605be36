"""`python -m bench` assembles one report from its parts: a missing part is marked
missing, a failing part is reported with its error, and the others still report."""

import json
import sys
import types

import pytest

import bench.__main__ as report


@pytest.fixture
def parts(monkeypatch):
    good = types.ModuleType("bench_part_good")
    good.run = lambda short: {"images_per_s": {"cold": 12.5, "warm": 250.0},
                              "ratios": {"warm / cold": 20.0}, "short": short}
    bad = types.ModuleType("bench_part_bad")

    def fail(short):
        raise RuntimeError("service did not start")
    bad.run = fail
    monkeypatch.setitem(sys.modules, "bench_part_good", good)
    monkeypatch.setitem(sys.modules, "bench_part_bad", bad)
    monkeypatch.setattr(report, "PARTS", {"good": "bench_part_good", "bad": "bench_part_bad",
                                          "absent": "bench_part_that_does_not_exist"})


def test_report_has_every_part_with_its_status(parts, tmp_path, capsys):
    code = report.main(["--short", "--out", str(tmp_path)])
    assert code == 1  # a part failed
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["form"] == "short"
    good, bad, absent = (data["parts"][k] for k in ("good", "bad", "absent"))
    assert good["status"] == "ok" and good["short"] is True
    assert good["images_per_s"] == {"cold": 12.5, "warm": 250.0}
    assert bad["status"] == "error" and "service did not start" in bad["error"]
    assert absent["status"] == "missing"
    text = (tmp_path / "report.md").read_text()
    assert "## good: ok" in text and "| images_per_s.warm | 250 |" in text
    assert "## bad: error" in text and "## absent: missing" in text
    assert text in capsys.readouterr().out


def test_only_runs_the_chosen_parts(parts, tmp_path):
    assert report.main(["--only", "good", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "report.json").read_text())
    assert list(data["parts"]) == ["good"] and data["form"] == "full"
    with pytest.raises(SystemExit):
        report.main(["--only", "nonsense", "--out", str(tmp_path)])


def test_an_import_error_inside_a_part_is_not_mistaken_for_a_missing_part(
        monkeypatch, tmp_path):
    (tmp_path / "bench_part_broken.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = report.run_part("broken", "bench_part_broken", short=True)
    assert result["status"] == "error"
    assert "no_such_dependency_xyz" in result["error"]


def test_flatten_keeps_nested_figures_addressable():
    rows = dict(report.flatten({"a": {"b": 1, "c": [1, 2]}, "d": [{"e": 3}]}))
    assert rows == {"a.b": 1, "a.c": [1, 2], "d[0].e": 3}
