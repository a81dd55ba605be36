"""Settings chosen by measurement at start, not by CPU flags or by what was fastest on
another machine.

The service times its candidate configurations on a few synthetic images, for about
FEATURE_CALIBRATION_S seconds in all, and keeps the fastest, in three stages that each
keep the winner of the one before: precision and memory layout; worker processes x
intra-op threads (a CPU: several small workers, or one using every core); batch size.
Where the models run in the service process (a GPU), the decoding workers are then
measured: the fewest that keep up with the models. A setting given explicitly is not
measured. A challenger must beat the default by MARGIN (by PRECISION_MARGIN for a reduced
precision), so noise on a shared machine does not flip choices. Candidates that no longer
fit the time budget are not measured; the table says so.

The precision changes the features (it is part of the extractor version), so once
measured it is kept in the cache directory (`calibration.json`, per machine): a restart
does not change the features. Delete the file, or set FEATURE_PRECISION, to choose again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from feature_service.engine import Plan
from feature_service.extractors.base import Choices, Settings

log = logging.getLogger(__name__)

MARGIN = 1.05
PRECISION_MARGIN = 1.10
KEPT_FILE = "calibration.json"
# Decoding workers keep up when they prepare this much faster than the models compute.
DECODE_HEADROOM = 1.2

Measure = Callable[[Plan, float], Awaitable[float]]
MeasureDecoding = Callable[[int, float], Awaitable[float]]


@dataclass(frozen=True)
class Wanted:
    """The settings as configured; "auto" or 0 means measure."""
    precision: str = "auto"
    layout: str = "auto"
    threads: int = 0
    max_batch: int = 0
    workers: int = 0
    budget_s: float = 20.0
    compiled: bool = False


@dataclass(frozen=True)
class Row:
    stage: str
    candidate: str
    images_per_s: float  # 0: not measured (over the time budget)
    chosen: bool = False


@dataclass(frozen=True)
class Calibration:
    plan: Plan
    rows: tuple[Row, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)  # setting: given/measured/...
    seconds: float = 0.0
    images_per_s: float = 0.0  # what the chosen plan measured (0: not measured)


def synthetic_images(count: int = 4, size: tuple[int, int] = (480, 360)) -> list[bytes]:
    """Photo-like JPEGs (smooth shapes and noise), so that decoding does real work."""
    rng = np.random.default_rng(0)
    images = []
    y, x = np.mgrid[0:size[1], 0:size[0]]
    for k in range(count):
        base = np.stack([(x * (k + 1) + y) % 256, (y * 2 + k * 40) % 256,
                         (x + y * (k + 2)) % 256], axis=-1).astype(np.float32)
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def default_plan(wanted: Wanted, choices: Choices, cores: int, inference: str) -> Plan:
    """What runs when nothing is measured: the given settings, else the defaults."""
    if inference == "workers":
        workers = wanted.workers or (cores if choices.worker_per_core else 1)
        threads = wanted.threads or max(1, cores // workers)
    else:
        workers, threads = wanted.workers or cores, wanted.threads or cores
    settings = Settings(wanted.precision if wanted.precision != "auto" else choices.precisions[0],
                        wanted.layout if wanted.layout != "auto" else choices.layouts[0],
                        threads, wanted.compiled)
    return Plan(settings, inference, wanted.max_batch or choices.batches[0], workers)


def describe(plan: Plan) -> str:
    return (f"{plan.settings.precision}, {plan.settings.layout}, {plan.workers} worker(s) x "
            f"{plan.settings.threads} thread(s), batch {plan.max_batch}")


class Calibrator:
    def __init__(self, wanted: Wanted, choices: Choices, cores: int, inference: str,
                 measure: Measure, measure_decoding: MeasureDecoding | None = None,
                 kept_precision: str | None = None) -> None:
        self.wanted, self.choices, self.cores, self.inference = (
            wanted, choices, cores, inference)
        self.measure, self.measure_decoding = measure, measure_decoding
        self.kept_precision = kept_precision
        self.rows: list[Row] = []
        self.sources: dict[str, str] = {}

    async def run(self) -> Calibration:
        started = time.monotonic()
        wanted = self.wanted
        if self.kept_precision and wanted.precision == "auto":
            wanted = replace(wanted, precision=self.kept_precision)
        plan = default_plan(wanted, self.choices, self.cores, self.inference)
        self.sources = {
            "precision": ("kept" if self.kept_precision and self.wanted.precision == "auto"
                          else "given" if self.wanted.precision != "auto" else "default"),
            "layout": "given" if wanted.layout != "auto" else "default",
            "threads": "given" if wanted.threads else "default",
            "max_batch": "given" if wanted.max_batch else "default",
            "workers": "given" if wanted.workers else "default"}
        if wanted.budget_s <= 0:
            return Calibration(plan, (), self.sources)
        deadline = started + wanted.budget_s
        count = (len(self.choices.precisions) * len(self.choices.layouts)
                 + 3 + len(self.choices.batches))
        per = max(0.3, 0.5 * wanted.budget_s / count)
        best_rate = 0.0

        precisions = (self.choices.precisions if wanted.precision == "auto"
                      else (wanted.precision,))
        layouts = self.choices.layouts if wanted.layout == "auto" else (wanted.layout,)
        if len(precisions) * len(layouts) > 1:
            candidates = [replace(plan, settings=replace(plan.settings, precision=p, layout=lay))
                          for p in precisions for lay in layouts]
            plan, best_rate = await self._stage("precision, layout", candidates, per, deadline)
            self._measured("precision", wanted.precision == "auto")
            self._measured("layout", wanted.layout == "auto")
        if self.inference == "workers" and not (wanted.workers and wanted.threads):
            plan, best_rate = await self._stage(
                "workers x threads", self._worker_candidates(plan, wanted), per, deadline,
                best_rate)
            self._measured("workers", not wanted.workers)
            self._measured("threads", not wanted.threads)
        if not wanted.max_batch and len(self.choices.batches) > 1:
            candidates = [replace(plan, max_batch=b) for b in self.choices.batches]
            plan, best_rate = await self._stage("batch", candidates, per, deadline, best_rate)
            self._measured("max_batch", True)
        if self.inference == "service" and not wanted.workers and self.measure_decoding:
            plan = await self._decoding(plan, best_rate, per, deadline)
        return Calibration(plan, tuple(self.rows), self.sources,
                           round(time.monotonic() - started, 2), round(best_rate, 2))

    def _worker_candidates(self, plan: Plan, wanted: Wanted) -> list[Plan]:
        pairs: list[tuple[int, int]] = []
        for workers in sorted({1, max(1, self.cores // 2), self.cores}):
            if wanted.workers and workers != wanted.workers:
                continue
            threads = wanted.threads or max(1, self.cores // workers)
            pairs.append((workers, threads))
        current = (plan.workers, plan.settings.threads)
        ordered = [current] + [p for p in dict.fromkeys(pairs) if p != current]
        return [replace(plan, workers=w, settings=replace(plan.settings, threads=t))
                for w, t in ordered]

    def _measured(self, setting: str, measured: bool) -> None:
        if measured and self.sources.get(setting) != "kept":
            self.sources[setting] = "measured"

    async def _stage(self, stage: str, candidates: list[Plan], per: float, deadline: float,
                     incumbent_rate: float = 0.0) -> tuple[Plan, float]:
        """The fastest candidate; the first (the incumbent) wins unless beaten by MARGIN."""
        best, best_rate, rows = candidates[0], 0.0, []
        for k, candidate in enumerate(candidates):
            # Past the budget nothing more is measured, but the first stage's incumbent:
            # the chosen settings always have a measured rate.
            if time.monotonic() > deadline and (k > 0 or incumbent_rate):
                rows.append(Row(stage, describe(candidate), 0.0))
                continue
            rate = await self.measure(candidate, per)
            rows.append(Row(stage, describe(candidate), round(rate, 2)))
            margin = (PRECISION_MARGIN if candidate.settings.precision != best.settings.precision
                      and candidate.settings.precision != "float32" else MARGIN)
            if k == 0 or rate > best_rate * margin:
                best, best_rate = candidate, rate
        self.rows += [replace(r, chosen=r.candidate == describe(best)) for r in rows]
        log.info("calibration stage", extra={
            "stage": stage, "chosen": describe(best),
            "images_per_s": {r.candidate: r.images_per_s for r in rows}})
        return best, best_rate or incumbent_rate

    async def _decoding(self, plan: Plan, model_rate: float, per: float,
                        deadline: float) -> Plan:
        """The fewest decoding workers that prepare DECODE_HEADROOM x faster than the
        models compute, else all cores."""
        assert self.measure_decoding is not None
        chosen = self.cores
        for workers in sorted({1, max(1, self.cores // 2), self.cores}):
            if time.monotonic() > deadline:
                break
            rate = await self.measure_decoding(workers, per)
            self.rows.append(Row("decoding workers", f"{workers} worker(s)", round(rate, 2)))
            if rate >= DECODE_HEADROOM * model_rate:
                chosen = workers
                break
        self.rows = [replace(r, chosen=r.candidate == f"{chosen} worker(s)")
                     if r.stage == "decoding workers" else r for r in self.rows]
        self.sources["workers"] = "measured"
        return replace(plan, workers=chosen)


def machine_fingerprint(extractor: str, device: str, cores: int) -> str:
    """What a measured precision holds for: this extractor on this kind of machine."""
    model, flags = platform.processor(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return f"{extractor}|{device}|{model}|{digest}|{cores}"


def kept_precision(directory: Path, fingerprint: str) -> str | None:
    try:
        kept = json.loads((directory / KEPT_FILE).read_text())
    except (OSError, ValueError):
        return None
    entry = kept.get(fingerprint) if isinstance(kept, dict) else None
    return entry.get("precision") if isinstance(entry, dict) else None


def keep_precision(directory: Path, fingerprint: str, precision: str) -> None:
    path = directory / KEPT_FILE
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    kept = kept if isinstance(kept, dict) else {}
    kept[fingerprint] = {"precision": precision,
                         "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(kept, indent=2) + "\n")
    os.replace(partial, path)
