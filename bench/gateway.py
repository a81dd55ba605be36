"""Gateway latency under load: simulated annotators (an aiohttp load generator on
loopback) lease items with GET /api/items/next and answer each with POST /api/annotations,
1, 5 and 20 at a time, against real feature, trainer and gateway processes. The same
lease-and-annotate loop straight to the trainer over gRPC, one client, is the baseline
that the gateway's own cost is measured against."""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import stack

ROOT = stack.ROOT
TILES = ROOT.parent / "shared" / "data" / "streetview-tiles" / "labels.csv"
CACHE = ROOT / ".run" / "sim-cache"
ITEMS_PER_LEASE = 5
FIRST_ANSWER_GRACE_S = 60.0
CSRF = {"X-Requested-With": "hitl-bench"}


@dataclass(frozen=True)
class Shape:
    """How big a run is: the short form runs in CI, the full form for people. Each phase
    (the gRPC baseline, then each level) stops after `seconds_per_level` or
    `annotations_per_level` annotations, so that no phase runs out of pool items."""

    items: int
    seconds_per_level: float
    annotations_per_level: int
    levels: tuple[int, ...] = (1, 5, 20)

    def __post_init__(self) -> None:
        pool = self.items * (1 - 2 * HELD_OUT_FRACTION)
        leased = ITEMS_PER_LEASE * max(self.levels)  # held when a phase ends
        if (len(self.levels) + 1) * self.annotations_per_level + leased > pool:
            raise ValueError(f"{self.items} items cannot feed {len(self.levels) + 1} phases "
                             f"of {self.annotations_per_level} annotations")


# The trainer's validation and evaluation shares: small, the pool is what is leased.
HELD_OUT_FRACTION = 0.05
SHORT = Shape(items=800, seconds_per_level=2.0, annotations_per_level=150)
FULL = Shape(items=7326, seconds_per_level=15.0, annotations_per_level=1500)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Samples:
    next_ms: list[float] = field(default_factory=list)
    annotate_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    empty_leases: int = 0
    annotations_left: int = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def summary(self, seconds: float) -> dict:
        out: dict = {}
        for name, values in (("next_items", self.next_ms), ("annotate", self.annotate_ms)):
            out[name] = {"count": len(values), "p50_ms": round(percentile(values, 50), 2),
                         "p99_ms": round(percentile(values, 99), 2),
                         "mean_ms": round(statistics.fmean(values), 2) if values else None}
        out["annotations_per_s"] = round(len(self.annotate_ms) / seconds, 1) if seconds else None
        out["errors"] = dict(self.errors)
        out["empty_leases"] = self.empty_leases
        return out


def past(deadline: float, measured: bool) -> bool:
    """Past a timed phase's `deadline`, once it has `measured` something to report: on a
    loaded machine a short phase could otherwise end before its first answer (never more
    than FIRST_ANSWER_GRACE_S past the deadline). The floods benchmark's phases too."""
    now = time.monotonic()
    return now >= deadline and (measured or now >= deadline + FIRST_ANSWER_GRACE_S)


async def _annotator(base: str, name: str, deadline: float, samples: Samples) -> None:
    rng = random.Random(name)
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies set by a bare IP address
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base, cookie_jar=jar, timeout=timeout) as http:
        async with http.post("/api/session", json={"annotator": name}, headers=CSRF) as r:
            if r.status != 200:
                raise RuntimeError(f"POST /api/session: {r.status} {await r.text()}")
        while not past(deadline, bool(samples.annotate_ms)) and samples.annotations_left > 0:
            started = time.perf_counter()
            async with http.get("/api/items/next", params={"n": str(ITEMS_PER_LEASE)}) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    samples.error(f"next {r.status}")
                    continue
            samples.next_ms.append((time.perf_counter() - started) * 1e3)
            items = body.get("items", [])
            if not items:
                samples.empty_leases += 1
                await asyncio.sleep(0.05)
                continue
            for item in items:
                if past(deadline, bool(samples.annotate_ms)) or samples.annotations_left <= 0:
                    break
                samples.annotations_left -= 1
                payload = {"id": uuid.uuid4().hex, "item_id": item["id"],
                           "label": rng.choice(("positive", "negative"))}
                started = time.perf_counter()
                async with http.post("/api/annotations", json=payload, headers=CSRF) as r:
                    await r.read()
                    if r.status not in (200, 201):
                        samples.error(f"annotate {r.status}")
                        continue
                samples.annotate_ms.append((time.perf_counter() - started) * 1e3)


async def load(base: str, annotators: int, seconds: float, annotations: int,
               tag: str) -> dict:
    """`annotators` concurrent simulated annotators for at most `seconds` and
    `annotations` annotations between them."""
    samples = Samples(annotations_left=annotations)
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(
        _annotator(base, f"bench-{tag}-{i}", deadline, samples) for i in range(annotators)))
    return samples.summary(time.monotonic() - started)


async def grpc_baseline(address: str, seconds: float, annotations: int) -> dict:
    """The same loop as one annotator, straight to the trainer over gRPC."""
    from hitl.channels import open_channel
    from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

    samples = Samples()
    channel = open_channel(address, "hitl.v1.TrainerService")
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    rng = random.Random("grpc")
    started = time.monotonic()
    deadline = started + seconds
    left = annotations
    try:
        while time.monotonic() < deadline and left > 0:
            t0 = time.perf_counter()
            reply = await stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
                annotator="bench-grpc", count=min(ITEMS_PER_LEASE, left)))
            samples.next_ms.append((time.perf_counter() - t0) * 1e3)
            if not reply.items:
                samples.empty_leases += 1
                await asyncio.sleep(0.05)
            for item in reply.items:
                label = rng.choice((common_pb2.LABEL_POSITIVE, common_pb2.LABEL_NEGATIVE))
                t0 = time.perf_counter()
                await stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                    annotation_id=uuid.uuid4().hex, item_id=item.id, label=label,
                    annotator="bench-grpc"))
                left -= 1
                samples.annotate_ms.append((time.perf_counter() - t0) * 1e3)
    finally:
        await channel.close()
    return samples.summary(time.monotonic() - started)


def run(short: bool = True, dataset: Path = TILES, cache: Path = CACHE,
        shape: Shape | None = None) -> dict:
    """Starts feature, trainer and gateway on a tile subset and measures them."""
    refused = stack.cannot_run(dataset)
    if refused:
        return refused
    shape = shape or (SHORT if short else FULL)
    work = cache / "bench-gateway"
    with stack.tile_stack(dataset, shape.items, work, cache,
                          {"TRAINER_VALIDATION_FRACTION": str(HELD_OUT_FRACTION),
                           "TRAINER_EVALUATION_FRACTION": str(HELD_OUT_FRACTION)}
                          ) as services:
        _, trainer, gateway = services
        result = asyncio.run(_measure(gateway.port, trainer.address, shape))
    result["peak_rss_mib"] = {s.name: round(s.peak_mib, 1) if s.peak_mib else None
                              for s in services}
    result["status"] = "ok"
    shutil.rmtree(work, ignore_errors=True)
    return result


async def _measure(port: int, trainer_address: str, shape: Shape) -> dict:
    base = f"http://127.0.0.1:{port}"
    baseline = await grpc_baseline(trainer_address, shape.seconds_per_level,
                                   shape.annotations_per_level)
    levels = {}
    for n in shape.levels:
        levels[str(n)] = await load(base, n, shape.seconds_per_level,
                                    shape.annotations_per_level, tag=str(n))
    ratios = {}
    for n, figures in levels.items():
        for op in ("next_items", "annotate"):
            direct = baseline[op]["p50_ms"]
            if direct and direct == direct:  # not NaN
                ratios[f"{op} p50, {n} annotators / direct gRPC"] = round(
                    figures[op]["p50_ms"] / direct, 2)
    return {"shape": {"items": shape.items, "seconds_per_level": shape.seconds_per_level,
                      "annotations_per_level": shape.annotations_per_level,
                      "items_per_lease": ITEMS_PER_LEASE},
            "grpc_direct_1": baseline, "annotators": levels, "ratios": ratios}
