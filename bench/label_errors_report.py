"""The report of bench.label_errors: curves, final F1s and how much of the gap the review
closed, the precision of what was served for review and of the most suspicious labels."""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from dataclasses import dataclass, field

from bench import curves
from bench.dataset import Example

TOP = 50
TAIL = 3
RUNS = ("clean", "noisy", "review")


@dataclass
class Run:
    name: str
    seed: int
    curve: list[dict] = field(default_factory=list)
    first_reviews: list[bool] = field(default_factory=list)  # was the first answer wrong?
    labels: dict[str, int] = field(default_factory=dict)  # in force at the end, by majority
    counts: dict[str, int] = field(default_factory=dict)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def report(args: argparse.Namespace, examples: list[Example], runs: list[Run],
           suspects: list[dict]) -> dict:
    args.out.mkdir(parents=True, exist_ok=True)
    # A model is trained once `step` answers are in, a few more when a batch overshoots:
    # on the step's grid the seeds line up for the chart.
    rows = [{**row, "labels": args.step * round(row["labels"] / args.step)}
            for run in runs for row in run.curve]
    with (args.out / "curves.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ("run", "seed", "labels", "f1", "precision", "recall"))
        writer.writeheader()
        writer.writerows(rows)
    truth = {e.id: int(e.label) for e in examples}
    final = {name: [r.curve[-1]["f1"] for r in runs if r.name == name and r.curve]
             for name in RUNS}
    # One model's F1 moves by a few points from one retraining to the next: the mean of
    # the last TAIL models is the steadier figure.
    tail = {name: [_mean([p["f1"] for p in r.curve[-TAIL:]])
                   for r in runs if r.name == name and r.curve] for name in RUNS}
    errors_left = {name: [sum(v != truth[i] for i, v in r.labels.items())
                          for r in runs if r.name == name] for name in RUNS}
    firsts = [r.first_reviews[:TOP] for r in runs if r.name == "review"]
    clean, noisy, reviewed = (_mean(final[n]) for n in RUNS)
    gap = clean - noisy
    tail_clean, tail_noisy, tail_review = (_mean(tail[n]) for n in RUNS)
    tail_gap = tail_clean - tail_noisy
    summary = {
        "dataset": str(args.dataset), "items": len(examples),
        "positives": sum(truth.values()), "seeds": args.seeds, "budget": args.budget,
        "step": args.step, "error_rate": args.error_rate, "review_share": args.review_share,
        "final_f1": final, "mean_final_f1": {"clean": clean, "noisy": noisy,
                                             "review": reviewed},
        "gap": gap, "recovered": reviewed - noisy,
        "recovered_share": (reviewed - noisy) / gap if gap > 0 else None,
        "tail_f1": tail, "tail_gap": tail_gap, "tail_recovered": tail_review - tail_noisy,
        "tail_recovered_share": ((tail_review - tail_noisy) / tail_gap
                                 if tail_gap > 0 else None),
        "first_reviews": [{"served": len(f), "real_errors": sum(f)} for f in firsts],
        "top_suspects": suspects, "errors_in_force": errors_left,
        "review_counts": [r.counts for r in runs if r.name == "review"],
    }
    by_run = curves.curves_by_run([{**r, "strategy": r["run"]} for r in rows])
    title = (f"{len(examples)} street tiles, {args.error_rate:.0%} annotator error, "
             f"review share {args.review_share:g}")
    curves.plot(by_run, [args.out / "f1.png", args.out / "f1.svg"], title)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [f"# Label errors and review\n\n{title}; {args.seeds} seed(s), "
             f"{args.budget} answers, a model every {args.step}.\n",
             f"| run | final F1 by seed | mean | mean of the last {TAIL} models | "
             "label errors in force at the end |", "|---|---|---:|---:|---|"]
    for name in RUNS:
        lines.append(f"| {name} | {', '.join(f'{v:.3f}' for v in final[name])} | "
                     f"{_mean(final[name]):.3f} | {_mean(tail[name]):.3f} | "
                     f"{', '.join(str(v) for v in errors_left[name])} |")
    for what, opened, closed, share in (
            ("final F1", gap, reviewed - noisy, summary["recovered_share"]),
            (f"mean of the last {TAIL} models", tail_gap, tail_review - tail_noisy,
             summary["tail_recovered_share"])):
        lines.append(f"\n{what}: gap opened by the errors {opened:.3f}, closed by the "
                     f"review {closed:.3f}" + (f" ({share:.0%})" if share is not None else ""))
    for k, f in enumerate(firsts):
        lines.append(f"\nSeed {k}: of the first {len(f)} items served for review, "
                     f"{sum(f)} were real errors.")
    for k, s in enumerate(suspects):
        lines.append(f"\nSeed {k}, noisy run's {s['labels']} final labels "
                     f"({s['errors']} wrong): {s['flagged']} flagged; of the {s['top']} most "
                     f"suspicious, {s['top_errors']} are real errors.")
    for k, c in enumerate(summary["review_counts"]):
        lines.append(f"\nSeed {k}, review run: {c}")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    return summary


