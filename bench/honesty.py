"""Is the live score honest? Two checks over the simulator's rows (one row per model,
with the held-out evaluation F1, the live estimate's interval and the forecast):

- coverage: the share of checkpoints whose 90% interval holds the evaluation F1;
- the forecast's backtest: the share of forecasts whose 80% interval holds the labels
  the run really needed, counted from where the forecast was made, to first reach the
  target on the evaluation split.

Plain functions over rows, as in `curves.py`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


def _has(row: dict, key: str) -> bool:
    value = row.get(key, "")
    return value != "" and value is not None and not (
        isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Coverage:
    checkpoints: int
    covered: int
    mean_width: float

    @property
    def share(self) -> float:
        return self.covered / self.checkpoints if self.checkpoints else float("nan")


def coverage(rows: Iterable[dict], min_labels: int = 100, truth: str = "f1") -> Coverage:
    """Checkpoints from `min_labels` labels on that have an estimate: how many intervals
    hold the evaluation F1 (`truth="f1"`) or the F1 over every pool item the model never
    trained on (`truth="pool_f1"`)."""
    checked = [r for r in rows if int(r["labels"]) >= min_labels and _has(r, "estimate_low")
               and _has(r, truth)]
    covered = sum(float(r["estimate_low"]) <= float(r[truth]) <= float(r["estimate_high"])
                  for r in checked)
    width = (sum(float(r["estimate_high"]) - float(r["estimate_low"]) for r in checked)
             / len(checked)) if checked else float("nan")
    return Coverage(len(checked), covered, width)


def _runs(rows: Iterable[dict]) -> dict[tuple[str, int], list[dict]]:
    runs: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in rows:
        runs[(r["strategy"], int(r["seed"]))].append(r)
    return {k: sorted(v, key=lambda r: int(r["labels"])) for k, v in runs.items()}


@dataclass(frozen=True)
class Backtest:
    target: float
    forecasts: int  # forecasts made before the run reached the target
    covered: int
    runs: int  # runs that reached the target and made a forecast before it
    runs_covered: int  # of those, runs whose first forecast held the truth
    never_reached: int  # runs that did not reach the target within the budget

    @property
    def share(self) -> float:
        return self.covered / self.forecasts if self.forecasts else float("nan")


def _holds(row: dict, needed: int) -> bool:
    low, high = float(row["forecast_low"]), float(row["forecast_high"])
    return low <= needed and (high < 0 or needed <= high)


def backtest(rows: Iterable[dict], target: float) -> Backtest:
    forecasts = covered = runs = runs_covered = never = 0
    for run in _runs(rows).values():
        reached = next((int(r["labels"]) for r in run if float(r["f1"]) >= target), None)
        if reached is None:
            never += 1
            continue
        made = [r for r in run if int(r["labels"]) < reached and _has(r, "forecast_low")]
        for k, r in enumerate(made):
            ok = _holds(r, reached - int(r["labels"]))
            forecasts += 1
            covered += ok
            if k == 0:
                runs += 1
                runs_covered += ok
    return Backtest(target, forecasts, covered, runs, runs_covered, never)
