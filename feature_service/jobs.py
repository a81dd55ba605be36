"""The jobs a worker runs, wherever it runs (a worker process or a thread): embed a batch
of encoded images (decode, prepare, extract), prepare one image for models that run in
the service process, time a configuration for the calibration, or describe the extractor.
Every per-image failure comes back as (kind name, message), never as an exception, so one
bad image fails alone and results cross between processes as plain values."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from feature_service.decode import decode
from feature_service.extractors.base import Choices, Extractor, Settings
from feature_service.outcomes import ItemFailure, Kind

log = logging.getLogger(__name__)

# What a job gives back per image: a vector / prepared image, or (kind name, message).
Failure = tuple[str, str]


class Builder(Protocol):
    """Builds the named extractor on `device` for given settings; must pickle (it
    travels to the worker processes)."""

    @property
    def name(self) -> str: ...

    @property
    def device(self) -> str: ...

    def __call__(self, settings: Settings) -> Extractor: ...

    def choices(self) -> Choices: ...

    def check(self) -> None: ...


def failure(outcome: object) -> ItemFailure | None:
    if isinstance(outcome, tuple):
        return ItemFailure(Kind[outcome[0]], outcome[1])
    return None


def _failed(exc: ItemFailure) -> Failure:
    return (exc.kind.name, exc.message)


def extract_each(extractor: Extractor, prepared: Sequence[object]) -> list[object]:
    """One vector per prepared image; when the batch fails, each image alone, so one
    image that breaks the model fails alone."""
    if not prepared:
        return []
    try:
        return list(_extract(extractor, list(prepared)))
    except Exception:
        log.exception("batch inference failed; retrying its images one at a time")
    outcomes: list[object] = []
    for item in prepared:
        try:
            outcomes.append(_extract(extractor, [item])[0])
        except Exception as exc:
            outcomes.append((Kind.INTERNAL.name, f"inference failed: {type(exc).__name__}"))
    return outcomes


def _extract(extractor: Extractor, prepared: list[object]) -> np.ndarray:
    vectors = np.asarray(extractor.extract(prepared), dtype=np.float32)
    expected = (len(prepared), extractor.info.stored_dimension)
    if vectors.shape != expected:
        raise RuntimeError(f"extractor returned {vectors.shape}, expected {expected}")
    return vectors


@dataclass(frozen=True)
class Limits:
    max_pixels: int
    nice: int = 0  # the workers' CPU priority (FEATURE_WORKER_NICE)


def lower_priority(nice: int) -> None:
    """Lowers the calling thread's CPU priority to `nice` (Linux keeps one per thread; a
    process's threads and children inherit it when they start). Never raises it: that
    needs a privilege the services do not have."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        if nice > os.getpriority(os.PRIO_PROCESS, tid):
            os.setpriority(os.PRIO_PROCESS, tid, min(nice, 19))


def prepare_one(prepare: Callable[[Any], object], min_side: int, limits: Limits,
                data: bytes) -> object:
    try:
        return prepare(decode(data, max_pixels=limits.max_pixels, min_side=min_side))
    except ItemFailure as exc:
        return _failed(exc)
    except Exception:  # a decoder or resizer bug: this image fails, not its batch
        log.exception("unexpected failure preparing an image")
        return (Kind.INTERNAL.name, "unexpected error")


def embed_blobs(extractor: Extractor, limits: Limits, blobs: Sequence[bytes]) -> list[object]:
    """Decode, prepare and extract a batch: a vector or a Failure per image, in order."""
    outcomes: list[object] = [prepare_one(extractor.prepare, extractor.min_side, limits, b)
                              for b in blobs]
    ready = [i for i, o in enumerate(outcomes) if not isinstance(o, tuple)]
    for i, vector in zip(ready, extract_each(extractor, [outcomes[i] for i in ready]),
                         strict=True):
        outcomes[i] = vector
    return outcomes


def _timed(work: Callable[[int], object], batch: int, seconds: float) -> tuple[int, float]:
    """(images, seconds) of `work(k)` for k = 0, batch, 2 batch... for about `seconds`,
    at least once: a calibration measurement."""
    done, started = 0, time.perf_counter()
    while True:
        work(done)
        done += batch
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done, elapsed


def _cycle(items: Sequence[Any], start: int, count: int) -> list[Any]:
    return [items[(start + j) % len(items)] for j in range(count)]


def time_blobs(extractor: Extractor, limits: Limits, blobs: Sequence[bytes], batch: int,
               seconds: float) -> tuple[int, float]:
    """Decoding, preparing and extracting in batches of `batch`, as a worker does."""
    return _timed(lambda k: embed_blobs(extractor, limits, _cycle(blobs, k, batch)),
                  batch, seconds)


def time_prepared(extractor: Extractor, limits: Limits, blobs: Sequence[bytes], batch: int,
                  seconds: float) -> tuple[int, float]:
    """The models alone, on images prepared beforehand (the service process's share)."""
    prepared = [prepare_one(extractor.prepare, extractor.min_side, limits, b) for b in blobs]
    return _timed(lambda k: extract_each(extractor, _cycle(prepared, k, batch)),
                  batch, seconds)


def time_prepare(prepare: Callable[[Any], object], min_side: int, limits: Limits,
                 blobs: Sequence[bytes], seconds: float) -> tuple[int, float]:
    """Decoding and preparing alone, one image at a time (a decoding worker's share)."""
    return _timed(lambda k: prepare_one(prepare, min_side, limits, blobs[k % len(blobs)]),
                  1, seconds)


@dataclass(frozen=True)
class Job:
    """What a worker is asked: "embed", "prepare", "time", "time_prepare" or "info"."""
    kind: str
    settings: Settings = field(default_factory=Settings)
    blobs: tuple[bytes, ...] = ()
    batch: int = 1
    seconds: float = 0.0


class State:
    """A worker's extractor, rebuilt when a job asks for other settings (calibration),
    the old one dropped first so two never share the memory."""

    def __init__(self, builder: Builder | None, limits: Limits,
                 preparer: tuple[Callable[[Any], object], int] | None,
                 extractor: Extractor | None = None) -> None:
        self.builder, self.limits, self.preparer = builder, limits, preparer
        self._extractor = extractor
        self._settings: Settings | None = None

    def extractor(self, settings: Settings) -> Extractor:
        if self.builder is None:
            assert self._extractor is not None
            return self._extractor
        if self._extractor is None or self._settings != settings:
            self._extractor = None
            self._extractor = self.builder(settings)
            self._extractor.warm_up()
            self._settings = settings
        return self._extractor

    def _preparer(self, settings: Settings) -> tuple[Callable[[Any], object], int]:
        if self.preparer is not None:
            return self.preparer
        extractor = self.extractor(settings)
        return extractor.prepare, extractor.min_side

    def run(self, job: Job) -> object:
        if job.kind == "prepare":
            return prepare_one(*self._preparer(job.settings), self.limits, job.blobs[0])
        if job.kind == "time_prepare":
            return time_prepare(*self._preparer(job.settings), self.limits, job.blobs,
                                job.seconds)
        extractor = self.extractor(job.settings)
        if job.kind == "embed":
            return embed_blobs(extractor, self.limits, job.blobs)
        if job.kind == "time":
            return time_blobs(extractor, self.limits, job.blobs, job.batch, job.seconds)
        if job.kind == "info":
            return extractor.info
        raise ValueError(f"unknown job {job.kind!r}")
