"""Guards of what the product exists for, in `make test`: on a stratified 2,400 of the
confirming half's 3,655 shared tiles (file names starting 5-9, never tuned on), the first
100 labels of 8 fixed seeds, through the real feature (lite) and trainer services,
counting every label:

- the default strategy reaches F1 0.85 on the evaluation split within 40 labels in every
  seed (10 seeds of the full measurement: 5 to 25), and F1 0.88 in at most half of the
  labels random sampling needs on average (a random seed that never gets there counts as
  the whole budget). The margin is judged near the ceiling (0.9), where ranking is what
  helps: the detector's prior gives random sampling a model of F1 about 0.8 from its
  first label too, so the mean F1 over the budget, the margin judged before the prior,
  differs by only 0.04;
- the live score's 90% interval holds the evaluation F1 at three checkpoints in four at
  least;
- a client that answers 300 items as fast as they are leased, never waiting for a
  model, is shown a live score resting on at least 20 audit answers (the audits start
  with the first answers).

Why 8 seeds: the trainer learns while it serves, so a seed does not fix a run, and the
labels random sampling needs to reach F1 0.88 spread widely. Two runs of these 8 seeds
side by side on a 2-core machine (2026-12-07, as loaded as CI; `python -m bench.simulate
--half confirm --limit 2400 --seeds 8 --budget 100 --strategies default,random
--no-ceiling`): random 15 to never, 61 on average over its 16 runs; default 10 to 55,
about 17 (ratios 0.32 and 0.25). Resampled from those runs, a mean over 3 seeds (as
here before) crosses the bound without any regression about one time in three, over 8
seeds about one in seventy; a default strategy no better than random passes it about one
time in a hundred.

It takes about 3 minutes on a quiet 2-core machine, feature extraction included: the
feature service runs the settings its calibration chooses on such a machine (int8, two
worker processes of one thread), given here so that no test pays for the measurement.
The full measurement (every item of the half, 300 labels, three strategies) is
`python -m bench.simulate --half confirm`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import curves, fast_client, honesty, simulate
from bench.dataset import read_labelled
from bench.sim_report import read_rows
from tests.support import TILES, require_data, require_lite_models

pytestmark = pytest.mark.slow  # minutes of CPU: in `make test`, not `make test-fast`

SEEDS = 8
ITEMS = 2400
BUDGET = 100
COVERAGE_FROM = 50
TARGET_LABELS = 40
NEAR_CEILING = 0.88
RANDOM_SHARE = 0.5
FAST_ANSWERS = 300
FAST_AUDITS = 20


FEATURE_SETTINGS = {"FEATURE_PRECISION": "int8", "FEATURE_INFERENCE": "workers",
                    "FEATURE_THREADS": "1", "FEATURE_MAX_BATCH": "4"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_data(TILES)
    require_lite_models()
    with pytest.MonkeyPatch.context() as patch:  # the feature services started here
        for name, value in FEATURE_SETTINGS.items():
            patch.setenv(name, value)
        yield tmp_path_factory.mktemp("label-efficiency")


@pytest.fixture(scope="module")
def simulation(workdir: Path) -> tuple[list[dict], dict]:
    tmp = workdir
    out = tmp / "out"
    code = simulate.main([
        "--half", "confirm", "--limit", str(ITEMS), "--seeds", str(SEEDS),
        "--budget", str(BUDGET),
        "--strategies", "default,random", "--no-ceiling",
        "--out", str(out), "--cache", str(tmp / "cache")])
    assert code == 0
    return read_rows(out / "curves.csv"), json.loads((out / "summary.json").read_text())


def test_only_the_confirming_half_was_used(workdir: Path,
                                          simulation: tuple[list[dict], dict]) -> None:
    _, summary = simulation
    names = [e.location for e in read_labelled(TILES / "labels.csv")]
    confirming = sum(1 for n in names if Path(n).name[0] in "56789")
    assert summary["half"] == "confirm" and ITEMS == summary["items"] < confirming < len(names)
    used = read_labelled(workdir / "cache" / "runs" / "manifest.csv")  # what the trainer read
    assert len(used) == ITEMS and {Path(e.location).name[0] for e in used} <= set("56789")


def test_the_default_strategy_beats_random_by_a_clear_margin(
        simulation: tuple[list[dict], dict]) -> None:
    rows, _ = simulation
    runs = curves.with_every_seed(curves.curves_by_run(rows), ["default", "random"],
                                  range(SEEDS))
    levels = [curves.TARGET_F1, NEAR_CEILING]
    summaries = {s.strategy: s for s in curves.summarise(runs, BUDGET, levels)}
    default, random = summaries["default"], summaries["random"]
    reach = default.reach[curves.TARGET_F1]
    assert reach.mean is not None and max(reach.per_seed) <= TARGET_LABELS, (  # type: ignore[type-var]
        f"default reached F1 0.85 after {reach.per_seed} labels")
    ratio = curves.ratio(default, random, NEAR_CEILING, BUDGET)
    assert ratio is not None and ratio <= RANDOM_SHARE, (
        f"labels to F1 {NEAR_CEILING}: default {default.reach[NEAR_CEILING].per_seed}, "
        f"random {random.reach[NEAR_CEILING].per_seed} (a ratio of {ratio})")


def test_the_live_interval_holds_the_evaluation_f1(simulation: tuple[list[dict], dict]) -> None:
    rows, _ = simulation
    found = honesty.coverage([r for r in rows if r["strategy"] == "default"], COVERAGE_FROM)
    assert found.checkpoints >= 10
    assert found.share >= 0.75, (
        f"the interval missed the evaluation F1 at {found.checkpoints - found.covered} of "
        f"{found.checkpoints} checkpoints")


def test_half_of_keeps_only_the_named_half() -> None:
    from bench.dataset import Example
    examples = [Example(str(i), f"/tiles/images/{c}abc.jpg", False) for i, c in
                enumerate("0123456789")]
    assert [Path(e.location).name[0] for e in simulate.half_of(examples, "confirm")] == list(
        "56789")
    assert len(simulate.half_of(examples, "all")) == 10


def test_a_fast_client_gets_a_live_score_early(workdir: Path,
                                               simulation: tuple[list[dict], dict]) -> None:
    """After the simulation (its feature cache and trainer template are reused)."""
    plan = simulate.plan_from(simulate.parse_args(
        ["--half", "confirm", "--limit", str(ITEMS), "--seeds", "1",
         "--cache", str(workdir / "cache")]))
    found = asyncio.run(fast_client.run(plan, FAST_ANSWERS, seed=0))
    assert found.answers == FAST_ANSWERS
    assert found.estimate_labels >= FAST_AUDITS, found
    assert found.low <= found.f1 <= found.high
