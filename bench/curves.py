"""Learning curves of the simulator: labels needed to reach an F1 level, area under the
curve, the summary table and the chart. Plain functions over rows of measurements."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

# The levels of the table: the task's target (0.85) and the stricter 0.89 among them.
LEVELS = (0.6, 0.7, 0.8, 0.85, 0.89)
TARGET_F1 = 0.85

Curve = list[tuple[int, float]]  # (labels, F1), labels increasing


def labels_to_reach(curve: Curve, level: float) -> int | None:
    """Labels at the first point whose F1 is at least `level`; None if never."""
    for labels, f1 in curve:
        if f1 >= level:
            return labels
    return None


def mean_f1_area(curve: Curve, budget: int | None = None) -> float:
    """Area under F1 against labels from the first label on, divided by the label span:
    the mean F1 over the run (1.0 would be a perfect model from the first label on).
    Before its first model a run has no classifier, so F1 counts as 0 there: a strategy
    that needs many labels before it can train at all pays for them. `budget` extends
    the last point flat so that runs that stopped early compare fairly."""
    if not curve:
        return 0.0
    points = [(0, 0.0), (curve[0][0], 0.0), *curve]
    if budget is not None and points[-1][0] < budget:
        points.append((budget, points[-1][1]))
    if points[-1][0] == 0:
        return 0.0
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in pairwise(points))
    return area / points[-1][0]


def curves_by_run(rows: Iterable[dict]) -> dict[str, dict[int, Curve]]:
    """{strategy: {seed: [(labels, f1), ...]}} from measurement rows."""
    runs: dict[str, dict[int, Curve]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        runs[row["strategy"]][int(row["seed"])].append((int(row["labels"]), float(row["f1"])))
    return {s: {seed: sorted(c) for seed, c in seeds.items()} for s, seeds in runs.items()}


def with_every_seed(runs: dict[str, dict[int, Curve]], strategies: Iterable[str],
                    seeds: Iterable[int]) -> dict[str, dict[int, Curve]]:
    """`runs` with an empty curve for every (strategy, seed) that never had a model within
    the budget: such a run is a miss that must count, not a run that did not happen."""
    out = {s: dict(c) for s, c in runs.items()}
    for strategy in [*strategies, *runs]:
        for seed in seeds:
            out.setdefault(strategy, {}).setdefault(seed, [])
    return {s: dict(sorted(c.items())) for s, c in out.items()}


@dataclass(frozen=True)
class Reach:
    """Labels to reach one F1 level over several seeds."""

    per_seed: tuple[int | None, ...]

    @property
    def reached(self) -> int:
        return sum(1 for n in self.per_seed if n is not None)

    @property
    def mean(self) -> float | None:
        """Mean over seeds; None unless every seed reached the level."""
        if not self.per_seed or self.reached < len(self.per_seed):
            return None
        return statistics.fmean(n for n in self.per_seed if n is not None)

    def text(self) -> str:
        if self.mean is None:
            if self.reached == 0:
                return "not reached"
            values = sorted(n for n in self.per_seed if n is not None)
            return (f"{self.reached}/{len(self.per_seed)} seeds "
                    f"({', '.join(map(str, values))}; not the others)")
        values = [n for n in self.per_seed if n is not None]
        if len(values) == 1:
            return f"{values[0]}"
        return f"{self.mean:.0f} ({min(values)}-{max(values)})"


@dataclass(frozen=True)
class StrategySummary:
    strategy: str
    seeds: int
    reach: dict[float, Reach]
    area: float
    final_f1: float


def summarise(runs: dict[str, dict[int, Curve]], budget: int | None = None,
              levels: Sequence[float] = LEVELS) -> list[StrategySummary]:
    out = []
    for strategy, seeds in runs.items():
        curves = [seeds[s] for s in sorted(seeds)]
        reach = {lv: Reach(tuple(labels_to_reach(c, lv) for c in curves)) for lv in levels}
        area = statistics.fmean(mean_f1_area(c, budget) for c in curves) if curves else 0.0
        final = statistics.fmean([c[-1][1] if c else 0.0 for c in curves] or [0.0])
        out.append(StrategySummary(strategy, len(curves), reach, area, final))
    return out


def beats(candidate: StrategySummary, baseline: StrategySummary) -> dict[float, bool]:
    """Per level: does `candidate` reach it in fewer labels than `baseline` on average
    over seeds? A level the baseline never reaches counts as beaten when the candidate
    reaches it on every seed."""
    verdict = {}
    for level, mine in candidate.reach.items():
        theirs = baseline.reach[level]
        if mine.mean is None:
            verdict[level] = False
        elif theirs.mean is None:
            verdict[level] = True
        else:
            verdict[level] = mine.mean < theirs.mean
    return verdict


def ratio(candidate: StrategySummary, baseline: StrategySummary, level: float,
          budget: int) -> float | None:
    """The candidate's mean labels to reach `level` over the baseline's; a baseline seed
    that never reached it counts as the whole budget (so the ratio is an upper bound)."""
    mine, theirs = candidate.reach.get(level), baseline.reach.get(level)
    if mine is None or theirs is None or mine.mean is None:
        return None
    base = statistics.fmean(_or_budget(theirs, budget))
    return mine.mean / base if base else None


def _or_budget(reach: Reach, budget: int) -> list[int]:
    """Labels to reach per seed, a seed that never reached counted as the whole budget."""
    return [n if n is not None else budget for n in reach.per_seed]


def ratio_interval(candidate: StrategySummary, baseline: StrategySummary, level: float,
                   budget: int, share: float = 0.9, draws: int = 4000,
                   seed: int = 0) -> tuple[float, float] | None:
    """A `share` bootstrap interval of `ratio`, resampling each strategy's seeds apart:
    with a handful of seeds, random's labels to a level swing by a factor of three or
    more, and the ratio is only as certain as that."""
    import numpy as np

    mine, theirs = candidate.reach.get(level), baseline.reach.get(level)
    if mine is None or theirs is None or mine.mean is None or len(mine.per_seed) < 2:
        return None
    rng = np.random.default_rng(seed)
    a = np.asarray(mine.per_seed, dtype=float)
    b = np.asarray(_or_budget(theirs, budget), dtype=float)
    ratios = (rng.choice(a, (draws, len(a))).mean(axis=1)
              / rng.choice(b, (draws, len(b))).mean(axis=1))
    low, high = np.quantile(ratios, [(1 - share) / 2, (1 + share) / 2])
    return float(low), float(high)


def estimates_by_run(rows: Iterable[dict]) -> dict[str, dict[int, list[tuple[int, float,
                                                                           float, float]]]]:
    """{strategy: {seed: [(labels, estimate, low, high), ...]}} where rows have one."""
    runs: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.get("estimate_f1", "") in ("", None):
            continue
        runs[row["strategy"]][int(row["seed"])].append(
            (int(row["labels"]), float(row["estimate_f1"]), float(row["estimate_low"]),
             float(row["estimate_high"])))
    return {s: {seed: sorted(c) for seed, c in seeds.items()} for s, seeds in runs.items()}


def table_markdown(summaries: list[StrategySummary], ceiling: float | None = None,
                   levels: Sequence[float] = LEVELS) -> str:
    head = ["strategy", "seeds", *(f"labels to F1 {lv:g}" for lv in levels),
            "mean F1 (area)", "final F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [s.strategy, str(s.seeds), *(s.reach[lv].text() for lv in levels),
                 f"{s.area:.3f}", f"{s.final_f1:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if ceiling is not None:
        lines.append("")
        lines.append(f"Full-pool supervised ceiling (every pool label used): F1 {ceiling:.3f}")
    return "\n".join(lines) + "\n"


def _band(curves: list[Curve]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Mean, min and max F1 over seeds at each label count all seeds measured."""
    by_labels: dict[int, list[float]] = defaultdict(list)
    for c in curves:
        for labels, f1 in c:
            by_labels[labels].append(f1)
    xs = sorted(x for x, v in by_labels.items() if len(v) == len(curves))
    return (xs, [statistics.fmean(by_labels[x]) for x in xs],
            [min(by_labels[x]) for x in xs], [max(by_labels[x]) for x in xs])


def plot(runs: dict[str, dict[int, Curve]], paths: Iterable[Path], title: str,
         ceiling: float | None = None, target: float = TARGET_F1,
         estimates: dict | None = None) -> None:
    """F1 on the evaluation split by strategy (mean line, band from the lowest to the
    highest seed); with `estimates`, the default mix's live estimate of its first seed
    as a dashed line inside its 90% interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    lowest = 1.0
    for strategy, seeds in runs.items():
        xs, mean, low, high = _band([seeds[s] for s in sorted(seeds)])
        if not xs:
            continue
        lowest = min(lowest, *low)
        (line,) = ax.plot(xs, mean, label=f"{strategy} ({len(seeds)} seeds)", linewidth=1.8)
        if len(seeds) > 1:
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    live = (estimates or {}).get("default", {})
    if live:
        seed = min(live)
        xs_e = [p[0] for p in live[seed]]
        ax.plot(xs_e, [p[1] for p in live[seed]], color="black", linestyle=":", linewidth=1.2,
                label=f"default seed {seed}: live estimate, 90% interval")
        ax.fill_between(xs_e, [p[2] for p in live[seed]], [p[3] for p in live[seed]],
                        color="black", alpha=0.08, linewidth=0)
        lowest = min(lowest, *(p[2] for p in live[seed]))
    ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target F1 {target:g}")
    if ceiling is not None and not math.isnan(ceiling):
        ax.axhline(ceiling, color="grey", linestyle=":", linewidth=1.2,
                   label=f"full-pool ceiling {ceiling:.3f}")
    ax.set_xlabel("labels given (training, audit and gold answers)")
    ax.set_ylabel("F1 on the held-out evaluation set")
    # The interesting part is near the top: start just below the lowest band.
    ax.set_ylim(max(0.0, math.floor(lowest * 10) / 10 - 0.1), 1)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
