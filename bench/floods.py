"""A fair share under floods: 8 simulated annotators label through the gateway while one
annotator floods POST /api/classify (5 requests at a time of 16 images of 2 MB, sent again
as soon as each is answered) and a second team floods the feature service's EmbedStream
with large images. Measured in one run against real feature, trainer and gateway
processes: the annotators' next-image latency (an answer sent, until the next image is in
hand) and the health checks (the gateway's /healthz and /readyz, and gRPC health of the
trainer and the feature service, each probe with the 1 s a kubelet gives it), with each
flood and with both, each phase between two of the annotators alone; the floods' share is
reported as ratios to the same annotators without them just before and after. The floods
and probes are in `bench.flood_load`."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import stack
from bench.flood_load import Shape, flood_process, probe, stop_flood
from bench.gateway import CSRF, past, percentile

ROOT = stack.ROOT
TILES = ROOT.parent / "shared" / "data" / "streetview-tiles" / "labels.csv"
CACHE = ROOT / ".run" / "sim-cache"
ITEMS_PER_LEASE = 5
# The targets: the annotators' p99 next-image latency under the floods at most this many
# times the same annotators' alone, and every health probe answered in time.
P99_RATIO_TARGET = 2.0
SHORT = Shape(items=1200, warm_up_s=4.0, seconds=12.0)
FULL = Shape(items=6000, warm_up_s=10.0, seconds=60.0)


@dataclass
class Tally:
    next_ms: list[float] = field(default_factory=list)
    labels: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def summary(self) -> dict:
        return {"labels": self.labels, "next_image_p50_ms": round(percentile(self.next_ms, 50), 1),
                "next_image_p99_ms": round(percentile(self.next_ms, 99), 1),
                "errors": dict(self.errors)}


async def _annotator(http: aiohttp.ClientSession, name: str, until: float, think_s: float,
                     tally: Tally) -> None:
    async with http.post("/api/session", json={"annotator": name}, headers=CSRF) as r:
        if r.status != 200:
            raise RuntimeError(f"POST /api/session: {r.status}")
    held: list[dict] = []
    while not past(until, tally.labels > 0):
        started = time.perf_counter()
        if held:
            item = held.pop(0)
            payload = {"id": uuid.uuid4().hex, "item_id": item["id"],
                       "label": "positive" if hash(item["id"]) % 3 == 0 else "negative"}
            async with http.post("/api/annotations", json=payload, headers=CSRF) as r:
                await r.read()
                if r.status in (200, 201):
                    tally.labels += 1
                else:
                    tally.error(f"annotate {r.status}")
        if not held:
            params = [("n", str(ITEMS_PER_LEASE))]
            async with http.get("/api/items/next", params=params) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    tally.error(f"next {r.status}")
                    await asyncio.sleep(0.1)
                    continue
            held = list(body.get("items", []))
            if not held:
                tally.error("no items")
                await asyncio.sleep(0.1)
                continue
        tally.next_ms.append((time.perf_counter() - started) * 1e3)
        await asyncio.sleep(think_s)


async def annotators(base: str, shape: Shape, seconds: float, tag: str) -> Tally:
    tally = Tally()
    until = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    # Cookies set by a bare IP address are kept (unsafe), one session per annotator.
    sessions = [aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                      timeout=timeout) for _ in range(shape.annotators)]
    try:
        await asyncio.gather(*(_annotator(s, f"{tag}-{i}", until, shape.think_s, tally)
                               for i, s in enumerate(sessions)))
    finally:
        for s in sessions:
            await s.close()
    return tally


# The phases, each with the same annotators: each flood on its own (to tell which one
# costs what), then both at once (the target), each between two phases of the annotators
# alone and judged against their mean. The trainer's work grows with its labels: in one
# full run with a single baseline first, the annotators alone had a next-image p99 of
# 38 ms at the start and 84 ms at the end with no flood at all, so a baseline taken only
# at the start blamed the floods for the drift.
PHASES = {"alone": (), "classify_only": ("classify",), "alone_2": (),
          "stream_only": ("stream",), "alone_3": (), "flooded": ("classify", "stream"),
          "alone_4": ()}
FLOODED = [name for name, floods in PHASES.items() if floods]


async def _phase(base: str, trainer: str, feature: str, shape: Shape,
                 floods: tuple[str, ...], tag: str) -> dict:
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(base, trainer, feature, stop))
    targets = {"classify": base, "stream": feature}
    running = {f"{kind}_flood": await flood_process(kind, targets[kind], shape)
               for kind in floods}
    if running:
        await asyncio.sleep(1.0)  # the floods are under way before the annotators start
    tally = await annotators(base, shape, shape.seconds, tag)
    stop.set()
    out = {"annotators": tally.summary(), "health": (await prober).summary()}
    for name, process in running.items():
        out[name] = await stop_flood(process)
    return out


def _ratio(out: dict, name: str, key: str) -> float:
    """`name`'s figure against the mean of the phases alone just before and after it."""
    names = list(PHASES)
    at = names.index(name)
    alone = [out[n]["annotators"][key] for n in (names[at - 1], names[at + 1])]
    return round(out[name]["annotators"][key] / max(sum(alone) / 2, 1e-9), 2)


async def _measure(base: str, trainer: str, feature: str, shape: Shape) -> dict:
    await annotators(base, shape, shape.warm_up_s, "warm")  # labels enough for a model
    out = {name: await _phase(base, trainer, feature, shape, floods, tag=name)
           for name, floods in PHASES.items()}
    out["ratios"] = {f"{name}: {key} / alone before and after": _ratio(out, name, key)
                     for name in FLOODED
                     for key in ("next_image_p99_ms", "next_image_p50_ms", "labels")}
    first, last = out[next(iter(PHASES))], out[list(PHASES)[-1]]
    out["ratios"]["drift: next_image_p99_ms alone, last / first"] = round(
        last["annotators"]["next_image_p99_ms"]
        / max(first["annotators"]["next_image_p99_ms"], 1e-9), 2)
    p99 = _ratio(out, "flooded", "next_image_p99_ms")
    late = sum(h["failed_or_late"] for h in out["flooded"]["health"].values())
    out["targets"] = {"next_image_p99_ratio_at_most": P99_RATIO_TARGET,
                      "next_image_p99_met": p99 <= P99_RATIO_TARGET,
                      "health_probes_failed_or_late": late, "health_met": late == 0}
    return out


def run(short: bool = True, dataset: Path = TILES, cache: Path = CACHE,
        shape: Shape | None = None) -> dict:
    refused = stack.cannot_run(dataset)
    if refused:
        return refused
    shape = shape or (SHORT if short else FULL)
    work = cache / "bench-floods"
    with stack.tile_stack(dataset, shape.items, work, cache,
                          {"TRAINER_VALIDATION_FRACTION": "0.05",
                           "TRAINER_EVALUATION_FRACTION": "0.05",
                           "TRAINER_MIN_PER_CLASS": "3"}) as services:
        feature, trainer, gateway = services
        result = asyncio.run(_measure(f"http://127.0.0.1:{gateway.port}", trainer.address,
                                      feature.address, shape))
    result["peak_rss_mib"] = {s.name: round(s.peak_mib, 1) if s.peak_mib else None
                              for s in services}
    result["shape"] = {"annotators": shape.annotators, "seconds_per_phase": shape.seconds,
                       "classify_requests_at_once": shape.classify_requests,
                       "classify_images_per_request": shape.classify_images,
                       "stream_calls": shape.stream_calls,
                       "stream_images_per_request": shape.stream_batch}
    result["status"] = "ok"
    shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(short="--full" not in sys.argv), indent=2))
