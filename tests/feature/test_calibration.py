"""How the settings are chosen at start (feature_service/calibration.py), on measurements
whose outcome the test decides: the fastest candidate of each stage wins, a challenger
must beat the default by a margin, given settings are not measured, the time budget
bounds the work, and a measured precision is kept for the next start."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from feature_service.calibration import (
    Calibrator,
    Wanted,
    default_plan,
    keep_precision,
    kept_precision,
    machine_fingerprint,
    synthetic_images,
)
from feature_service.engine import Plan
from feature_service.extractors.base import Choices

CHOICES = Choices(("float32", "int8"), ("contiguous", "channels_last"), (8, 1, 4, 16))


class Rates:
    """A machine where int8 is 1.5x, channels_last 1.2x, one worker per core 1.6x the
    one worker with every thread, and batch 4 the best; it records what it was asked."""

    def __init__(self, int8: float = 1.5, slow_s: float = 0.0) -> None:
        self.int8, self.slow_s = int8, slow_s
        self.asked: list[Plan] = []

    async def __call__(self, plan: Plan, seconds: float) -> float:
        self.asked.append(plan)
        if self.slow_s:
            await asyncio.sleep(self.slow_s)
        rate = 10.0 * (self.int8 if plan.settings.precision == "int8" else 1.0)
        rate *= 1.2 if plan.settings.layout == "channels_last" else 1.0
        rate *= 1.6 if plan.workers == 2 else 1.0
        return rate * {1: 0.5, 4: 1.3, 8: 1.2, 16: 1.1}[plan.max_batch]


def calibrate(wanted: Wanted, rates: Rates, kept: str | None = None):  # type: ignore[no-untyped-def]
    return asyncio.run(Calibrator(wanted, CHOICES, 2, "workers", rates,
                                  kept_precision=kept).run())


def test_each_stage_keeps_the_fastest_and_the_table_says_so() -> None:
    rates = Rates()
    result = calibrate(Wanted(budget_s=60), rates)
    plan = result.plan
    assert (plan.settings.precision, plan.settings.layout) == ("int8", "channels_last")
    assert (plan.workers, plan.settings.threads, plan.max_batch) == (2, 1, 4)
    assert result.images_per_s == round(10 * 1.5 * 1.2 * 1.6 * 1.3, 2)
    assert {r.stage for r in result.rows} == {"precision, layout", "workers x threads",
                                               "batch"}
    for stage in ("precision, layout", "workers x threads", "batch"):
        assert [r.chosen for r in result.rows if r.stage == stage].count(True) == 1
    assert set(result.sources.values()) == {"measured"}


def test_a_challenger_must_beat_the_default_by_a_margin() -> None:
    # int8 5% faster is noise on a shared machine: float32 stays (precision changes the
    # features, so it needs 10%).
    result = calibrate(Wanted(budget_s=60, layout="contiguous"), Rates(int8=1.05))
    assert result.plan.settings.precision == "float32"
    assert calibrate(Wanted(budget_s=60), Rates(int8=1.2)).plan.settings.precision == "int8"


def test_given_settings_are_not_measured() -> None:
    rates = Rates()
    wanted = Wanted(precision="float32", layout="contiguous", threads=2, workers=1,
                    max_batch=16, budget_s=60)
    result = calibrate(wanted, rates)
    assert rates.asked == [] and result.rows == ()
    plan = result.plan
    assert (plan.settings.precision, plan.workers, plan.settings.threads, plan.max_batch) == (
        "float32", 1, 2, 16)
    assert set(result.sources.values()) == {"given"}


def test_no_budget_means_the_defaults_and_no_measurement() -> None:
    rates = Rates()
    result = calibrate(Wanted(budget_s=0), rates)
    assert rates.asked == [] and result.plan == default_plan(Wanted(), CHOICES, 2, "workers")
    assert result.plan.workers == 2 and result.plan.max_batch == 8


def test_past_the_budget_the_rest_is_left_unmeasured() -> None:
    rates = Rates(slow_s=0.2)
    result = calibrate(Wanted(budget_s=0.3), rates)
    unmeasured = [r for r in result.rows if r.images_per_s == 0]
    assert unmeasured and len(rates.asked) < len(result.rows)
    assert result.images_per_s > 0  # the chosen settings were measured


def test_a_measured_precision_is_kept_for_this_machine(tmp_path: Path) -> None:
    fingerprint = machine_fingerprint("lite", "cpu", 2)
    assert kept_precision(tmp_path, fingerprint) is None
    keep_precision(tmp_path, fingerprint, "int8")
    keep_precision(tmp_path, machine_fingerprint("lite", "cpu", 8), "float32")
    assert kept_precision(tmp_path, fingerprint) == "int8"
    # The next start takes it without measuring precisions again, even where float32
    # would now measure faster.
    rates = Rates(int8=0.5)
    result = calibrate(Wanted(budget_s=60), rates, kept="int8")
    assert result.plan.settings.precision == "int8" and result.sources["precision"] == "kept"
    assert {p.settings.precision for p in rates.asked} == {"int8"}
    (tmp_path / "calibration.json").write_text("not json")
    assert kept_precision(tmp_path, fingerprint) is None


def test_synthetic_images_are_distinct_jpegs() -> None:
    images = synthetic_images(3, (64, 48))
    assert len(set(images)) == 3 and all(i.startswith(b"\xff\xd8") for i in images)


def test_the_default_plan_follows_the_extractor() -> None:
    big_model = replace(CHOICES, worker_per_core=False)
    plan = default_plan(Wanted(), big_model, 4, "workers")
    assert (plan.workers, plan.settings.threads) == (1, 4)
    plan = default_plan(Wanted(), CHOICES, 4, "service")
    assert plan.workers == 4 and plan.inference == "service"
