"""The feature service's start, run while health still answers NOT_SERVING: the worker
processes, the calibration that chooses the settings (feature_service/calibration.py),
the models warmed up with them, then the cache under the extractor's version (which the
precision is part of) and the pipeline."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from feature_service import content, metrics
from feature_service.cache import FeatureCache
from feature_service.calibration import (
    Calibration,
    Calibrator,
    Measure,
    MeasureDecoding,
    Wanted,
    keep_precision,
    kept_precision,
    machine_fingerprint,
    synthetic_images,
)
from feature_service.config import Config
from feature_service.engine import Engine, Plan
from feature_service.extractors import Choices, Extractor, ExtractorInfo, Settings
from feature_service.extractors.runtime import cpu_threads
from feature_service.fetch import Fetcher, FetchLimits
from feature_service.jobs import Builder, Job, Limits, time_prepared
from feature_service.pipeline import FeaturePipeline
from feature_service.vector_layout import VectorLayout
from feature_service.workers import ProcessWorkers, ThreadWorkers, Workers
from hitl.addresses import Allowlist
from hitl.evidence import EVIDENCE_VERSION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfiguredBuilder:
    """The configured extractor with its pretrained weights (picklable: it is built in
    each worker process)."""
    name: str
    models_dir: str
    device: str

    def __call__(self, settings: Settings) -> Extractor:
        from feature_service.extractors import load_extractor

        return load_extractor(self.name, Path(self.models_dir), self.device, settings)

    def choices(self) -> Choices:
        from feature_service.extractors import extractor_choices

        return extractor_choices(self.name, Path(self.models_dir), self.device)

    def check(self) -> None:
        """MissingWeightsError, naming the file and the command, when weights are absent."""
        if self.name == "lite":
            from feature_service.extractors.lite import lite_files

            lite_files(Path(self.models_dir) / "lite")
        else:
            from feature_service.extractors.resnext_frcnn import check_weights

            check_weights()


def configured_builder(config: Config) -> ConfiguredBuilder:
    """Raises MissingWeightsError at once (not in a worker) when the weights are absent,
    and ValueError for an unusable device."""
    device = "cpu"
    if config.extractor != "lite":  # lite always runs on the CPU, and never loads torch
        from feature_service.extractors.runtime import resolve_device

        device = resolve_device(config.device)
    builder = ConfiguredBuilder(config.extractor, config.models_dir, device)
    builder.check()
    return builder


@dataclass
class Ready:
    pipeline: FeaturePipeline
    info: ExtractorInfo
    calibration: Calibration
    cache: FeatureCache
    layout: VectorLayout


def wanted(config: Config) -> Wanted:
    return Wanted(config.precision, config.memory_layout, config.threads, config.max_batch,
                  config.decode_workers, config.calibration_s, config.compile)


def _workers_measure(workers: Workers, blobs: tuple[bytes, ...]) -> Measure:
    async def measure(plan: Plan, seconds: float) -> float:
        # Each worker answers a "time" job with (images done, seconds taken).
        done: list[tuple[int, float]] = await asyncio.gather(*(workers.run(Job(
            "time", plan.settings, blobs, plan.max_batch, seconds)) for _ in range(plan.workers)))
        return sum(n for n, _ in done) / max(s for _, s in done)
    return measure


class _InProcess:
    """The service-process extractor, rebuilt per settings while calibrating."""

    def __init__(self, builder: Builder | None, extractor: Extractor | None) -> None:
        self.builder, self.extractor = builder, extractor
        self.settings: Settings | None = None

    def get(self, settings: Settings) -> Extractor:
        if self.builder is not None and (self.extractor is None or self.settings != settings):
            self.extractor = None
            self.extractor = self.builder(settings)
            self.extractor.warm_up()
            self.settings = settings
        assert self.extractor is not None
        return self.extractor

    def measure(self, blobs: tuple[bytes, ...], limits: Limits) -> Measure:
        async def measure(plan: Plan, seconds: float) -> float:
            extractor = await asyncio.to_thread(self.get, plan.settings)
            images, took = await asyncio.to_thread(time_prepared, extractor, limits, blobs,
                                                   plan.max_batch, seconds)
            return images / took
        return measure


def _decoding_measure(workers: Workers, blobs: tuple[bytes, ...]) -> MeasureDecoding:
    async def measure(count: int, seconds: float) -> float:
        done: list[tuple[int, float]] = await asyncio.gather(*(workers.run(Job(
            "time_prepare", blobs=blobs, seconds=seconds)) for _ in range(count)))
        return sum(n for n, _ in done) / max(s for _, s in done)
    return measure


async def start(config: Config, builder: Builder | None,
                extractor: Extractor | None) -> tuple[Ready, Workers]:
    """Everything the servicer needs; `extractor` (an object, tests) runs on threads of
    this process, else `builder` builds one in each worker process."""
    if extractor is not None:
        name, device, choices = extractor.info.name, extractor.info.device, Choices()
    else:
        assert builder is not None
        name, device, choices = builder.name, builder.device, builder.choices()
    cores = cpu_threads()
    inference = config.inference
    if inference == "auto":
        inference = "service" if device.startswith("cuda") else "workers"
    limits = Limits(config.max_pixels, config.worker_nice)
    fingerprint = machine_fingerprint(name, device, cores)
    cache_dir = Path(config.cache_dir)
    blobs = tuple(synthetic_images())
    most = config.decode_workers or cores
    local = _InProcess(builder if extractor is None else None, extractor)
    workers: Workers
    if inference == "workers":
        workers = (ThreadWorkers(most, extractor, limits) if extractor is not None
                   else ProcessWorkers(most, builder, limits))
        await workers.start()
        measure, decoding = _workers_measure(workers, blobs), None
    else:
        first = await asyncio.to_thread(local.get, Settings())
        workers = (ThreadWorkers(most, first, limits) if extractor is not None
                   else ProcessWorkers(most, None, limits, (first.preparer(), first.min_side)))
        await workers.start()
        measure, decoding = local.measure(blobs, limits), _decoding_measure(workers, blobs)
    calibration = await Calibrator(wanted(config), choices, cores, inference, measure,
                                   decoding, kept_precision(cache_dir, fingerprint)).run()
    plan = calibration.plan
    if calibration.sources.get("precision") == "measured":
        keep_precision(cache_dir, fingerprint, plan.settings.precision)
    if isinstance(workers, ProcessWorkers):
        await workers.shrink(plan.workers)
    if inference == "workers":
        infos = await asyncio.gather(*(workers.run(Job("info", plan.settings))
                                       for _ in range(workers.count)))
        info, in_process = infos[0], None
    else:
        in_process = await asyncio.to_thread(local.get, plan.settings)
        info = in_process.info
    log.info("settings", extra={"plan": dataclasses.asdict(plan),
                                "sources": calibration.sources,
                                "calibration_s": calibration.seconds,
                                "images_per_s": calibration.images_per_s,
                                "version": info.version})
    metrics.record_settings(plan, calibration)
    # The stored layout (every class's evidence) is part of the namespace: entries of an
    # earlier layout are never read as this one.
    cache = FeatureCache(config.cache_dir,
                         f"{info.name}/{info.version}/{EVIDENCE_VERSION}/{content.LAYOUT}",
                         config.cache_map_bytes, config.cache_max_bytes)
    fetcher = Fetcher(Allowlist.from_entries(config.url_allowlist), FetchLimits(
        max_bytes=config.max_image_bytes, connect_timeout_s=config.connect_timeout_s,
        total_timeout_s=config.read_timeout_s, max_redirects=config.max_redirects,
        max_concurrent=config.fetch_concurrency))
    engine = Engine(plan, workers, config.max_wait_ms / 1000, dict(config.caller_weights),
                    in_process)
    engine.start()
    pipeline = FeaturePipeline(engine, cache, fetcher, max_image_bytes=config.max_image_bytes)
    return Ready(pipeline, info, calibration, cache, VectorLayout(info)), workers
