"""The simulator's outputs: curves.csv (one row per model), summary.md (the table of
labels to reach each F1, the live score's coverage, the forecast's backtest), summary.json
and the chart; and the same again from an earlier run's CSV (`--replot`)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from bench import curves, honesty
from bench.replay import ROW_FIELDS

# Targets whose forecasts are backtested: the task's, and a harder one so that runs
# make forecasts for longer before they reach it.
BACKTEST_TARGETS = (0.85, 0.9, 0.92)
COVERAGE_FROM = 100


@dataclass
class Report:
    """What the outputs describe."""

    title: str
    seeds: list[int]
    budget: int
    step: int
    mode: str
    meta: dict


def _number(text: str) -> int | float | str:
    if text == "":
        return ""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return [{k: (v if k in ("strategy", "model_version") else _number(v))
                 for k, v in r.items()} for r in csv.DictReader(f)]


def write(out: Path, report: Report, rows: list[dict], ceilings: list[dict]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "curves.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ROW_FIELDS)
        writer.writeheader()
        writer.writerows(rows + ceilings)
    runs = curves.with_every_seed(curves.curves_by_run(rows),
                                  report.meta.get("strategies", []), report.seeds)
    summaries = curves.summarise(runs, report.budget)
    ceiling = (sum(r["f1"] for r in ceilings) / len(ceilings)) if ceilings else None
    curves.plot(runs, [out / "f1.png", out / "f1.svg"], report.title, ceiling,
                estimates=curves.estimates_by_run(rows))
    by_name = {s.strategy: s for s in summaries}
    verdict = ratio = spread = None
    if "default" in by_name and "random" in by_name:
        verdict = {f"{lv:g}": ok for lv, ok in
                   curves.beats(by_name["default"], by_name["random"]).items()}
        ratio = curves.ratio(by_name["default"], by_name["random"], curves.TARGET_F1,
                             report.budget)
        spread = curves.ratio_interval(by_name["default"], by_name["random"],
                                       curves.TARGET_F1, report.budget)
    covered = {s: honesty.coverage([r for r in rows if r["strategy"] == s], COVERAGE_FROM)
               for s in runs}
    covered_pool = {s: honesty.coverage([r for r in rows if r["strategy"] == s],
                                        COVERAGE_FROM, truth="pool_f1") for s in runs}
    backtests = {t: honesty.backtest([r for r in rows if r["strategy"] == "default"], t)
                 for t in BACKTEST_TARGETS}
    text = [f"# Active-learning simulation\n\n{report.title}; {len(report.seeds)} seed(s), "
            f"budget {report.budget} labels, a model every {report.step}. Every label a "
            "person gives is counted: training, audit and gold answers.\n\n",
            curves.table_markdown(summaries, ceiling)]
    if verdict is not None:
        text.append("\nDefault mix reaches each level in fewer labels than random: "
                    + ", ".join(f"F1 {k}: {'yes' if v else 'no'}" for k, v in verdict.items())
                    + (f"; to F1 {curves.TARGET_F1:g} it needs {ratio:.2f} of random's "
                       "labels" if ratio is not None else "")
                    + (f" ({spread[0]:.2f}-{spread[1]:.2f}, a 90% bootstrap interval over "
                       "seeds)" if spread is not None else "") + ".\n")
    text.append("\nLive score: its 90% interval holds the evaluation F1 at "
                + "; ".join(f"{c.covered}/{c.checkpoints} checkpoints ({c.share:.0%}, mean "
                            f"width {c.mean_width:.3f}) for {s}"
                            for s, c in covered.items() if c.checkpoints)
                + f", from {COVERAGE_FROM} labels on; the F1 over every pool item the model "
                "never trained on at "
                + "; ".join(f"{c.covered}/{c.checkpoints} ({c.share:.0%}) for {s}"
                            for s, c in covered_pool.items() if c.checkpoints) + ".\n")
    text.append("\nForecast backtest (default mix): "
                + "; ".join(f"to F1 {b.target:g}, {b.covered}/{b.forecasts} forecasts "
                            f"({b.share:.0%}) and {b.runs_covered}/{b.runs} runs' first "
                            f"forecasts held the labels really needed"
                            + (f" ({b.never_reached} runs never reached it)"
                               if b.never_reached else "")
                            for b in backtests.values()) + ".\n")
    served = report.meta.get("served", {})
    if served:
        text.append("\nItems served, by the trainer's strategy: "
                    + "; ".join(f"{s}: " + ", ".join(
                        f"{k.removeprefix('STRATEGY_').lower()} {v}"
                        for k, v in sorted(c.items())) for s, c in served.items()) + "\n")
    (out / "summary.md").write_text("".join(text))
    summary = {
        **report.meta, "mode": report.mode, "seeds": report.seeds, "budget": report.budget,
        "step": report.step,
        "strategies": {s.strategy: {
            "labels_to_reach": {f"{lv:g}": list(r.per_seed) for lv, r in s.reach.items()},
            "mean_labels_to_reach": {f"{lv:g}": r.mean for lv, r in s.reach.items()},
            "mean_f1_area": s.area, "final_f1": s.final_f1,
            "coverage": vars(covered[s.strategy]) if s.strategy in covered else None,
            "coverage_of_pool_f1": vars(covered_pool[s.strategy])
            if s.strategy in covered_pool else None}
            for s in summaries},
        "ceiling_f1": ceiling, "ceiling_per_seed": ceilings,
        "default_beats_random": verdict, "default_over_random_to_target": ratio,
        "default_over_random_interval": spread,
        "backtest": {f"{t:g}": vars(b) for t, b in backtests.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def replot(out: Path) -> dict:
    """The outputs again from an earlier run's CSV and summary (new levels, a new chart)."""
    rows = read_rows(out / "curves.csv")
    earlier = json.loads((out / "summary.json").read_text())
    ceilings = [r for r in rows if r["strategy"] == "full-pool"]
    learning = [r for r in rows if r["strategy"] != "full-pool"]
    report = Report(earlier.get("title", ""), sorted({int(r["seed"]) for r in learning}),
                    earlier["budget"], earlier["step"], earlier.get("mode", ""), earlier)
    return write(out, report, learning, ceilings)
