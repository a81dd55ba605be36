"""The per-class table of label efficiency, from the simulator's outputs of several runs
(one folder per question and half, each with `summary.json` and `curves.csv`):
labels to F1 0.85 and 0.9 and to 95% of the class's own full-pool ceiling, for the
default mix and random sampling, and the ratio of the two (a random seed that never
reached a level counts as the whole budget, so the ratio is an upper bound).

    python -m bench.class_table artifacts/classes/*-confirm artifacts/classes/*-tune
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import curves
from bench.sim_report import read_rows

LEVELS = (0.85, 0.9)
CEILING_SHARE = 0.95


@dataclass(frozen=True)
class ClassRow:
    question: str
    detector_class: str
    half: str
    items: int
    positives: int
    seeds: int
    budget: int
    ceiling: float
    default: curves.StrategySummary
    random: curves.StrategySummary

    @property
    def ceiling_level(self) -> float:
        return round(CEILING_SHARE * self.ceiling, 3)

    def ratio(self, level: float) -> str:
        found = curves.ratio(self.default, self.random, level, self.budget)
        spread = curves.ratio_interval(self.default, self.random, level, self.budget)
        if found is None:
            return "-"
        return f"{found:.2f}" + (f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread else "")


def class_row(folder: Path) -> ClassRow:
    summary = json.loads((folder / "summary.json").read_text())
    rows = read_rows(folder / "curves.csv")
    ceilings = [r["f1"] for r in rows if r["strategy"] == "full-pool"]
    learning = [r for r in rows if r["strategy"] != "full-pool"]
    if not ceilings:
        raise SystemExit(f"{folder}: no full-pool ceiling (run without --no-ceiling)")
    ceiling = sum(ceilings) / len(ceilings)
    levels = (*LEVELS, round(CEILING_SHARE * ceiling, 3))
    runs = curves.with_every_seed(curves.curves_by_run(learning), ["default", "random"],
                                  summary["seeds"])
    by_name = {s.strategy: s for s in curves.summarise(runs, summary["budget"], levels)}
    return ClassRow(summary.get("positive_class") or "label", summary.get("detector_class", ""),
                    summary["half"], summary["items"], summary["positives"],
                    len(summary["seeds"]), summary["budget"], ceiling, by_name["default"],
                    by_name["random"])


def table(rows: list[ClassRow]) -> str:
    head = ["question", "detector class", "half", "positives", "ceiling F1",
            "to F1 0.85: default / random", "ratio", "to F1 0.9: default / random",
            "to 95% of ceiling: default / random", "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        top = r.ceiling_level
        cells = [r.question, r.detector_class or "none", r.half,
                 f"{r.positives}/{r.items}", f"{r.ceiling:.3f}",
                 f"{r.default.reach[0.85].text()} / {r.random.reach[0.85].text()}",
                 r.ratio(0.85),
                 f"{r.default.reach[0.9].text()} / {r.random.reach[0.9].text()}",
                 f"F1 {top:g}: {r.default.reach[top].text()} / {r.random.reach[top].text()}",
                 r.ratio(top)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.class_table",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path)
    args = p.parse_args(argv)
    print(table([class_row(f) for f in args.folders]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
