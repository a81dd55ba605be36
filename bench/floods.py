"""A fair share under floods: 8 simulated annotators label through the gateway while one
annotator floods POST /api/classify (5 requests at a time of 16 images of 2 MB, sent again
as soon as each is answered) and a second team floods the feature service's EmbedStream
with large images. Measured in one run against real feature, trainer and gateway
processes: the annotators' next-image latency (an answer sent, until the next image is in
hand) and the health checks (the gateway's /healthz and /readyz, and gRPC health of the
trainer and the feature service, each probe with the 1 s a kubelet gives it), first with
the annotators alone, then with both floods; the floods' share is reported as ratios to
the same annotators without them."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from bench import stack
from bench.dataset import read_labelled, stratified_subset, write_manifest
from bench.gateway import CSRF, percentile

ROOT = stack.ROOT
TILES = ROOT.parent / "shared" / "data" / "streetview-tiles" / "labels.csv"
CACHE = ROOT / ".run" / "sim-cache"
ANNOTATORS = 8
ITEMS_PER_LEASE = 5
PROBE_EVERY_S = 0.25
PROBE_DEADLINE_S = 1.0
# The targets: the annotators' p99 next-image latency under the floods at most this many
# times the same annotators' alone, and every health probe answered in time.
P99_RATIO_TARGET = 2.0


@dataclass(frozen=True)
class Shape:
    items: int
    warm_up_s: float
    seconds: float  # per phase: annotators alone, then with the floods
    annotators: int = ANNOTATORS
    think_s: float = 0.5  # an annotator's look at each image (people take a second or two)
    classify_requests: int = 5  # in flight at once from the one flooding annotator
    classify_images: int = 16
    classify_image_bytes: int = 2_000_000  # 16 of them fit GATEWAY_CLASSIFY_MAX_BYTES
    stream_calls: int = 2  # EmbedStream calls the other team keeps open
    stream_batch: int = 8  # images per streamed request
    stream_side: int = 5000  # pixels on each side of their images (25 megapixels)


SHORT = Shape(items=1200, warm_up_s=4.0, seconds=12.0)
FULL = Shape(items=6000, warm_up_s=10.0, seconds=60.0)


def noise_jpeg(width: int, height: int, target_bytes: int, seed: int) -> bytes:
    """The largest JPEG of noise over a gradient (it compresses poorly) of at most
    `target_bytes`."""
    rng = np.random.default_rng(seed)
    from PIL import Image

    gradient = np.linspace(0, 255, width)[None, :, None].repeat(height, 0).repeat(3, 2)
    out = b""
    for sigma in (10, 20, 30, 40, 50, 60, 70, 80, 90, 110):
        pixels = np.clip(gradient + rng.normal(0, sigma, (height, width, 3)), 0, 255)
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype("uint8")).save(buffer, "JPEG", quality=95)
        if buffer.tell() > target_bytes:
            break
        out = buffer.getvalue()
    return out


def large_jpeg(side: int) -> bytes:
    """A large but small-file image: decoding it costs its pixels, not its bytes."""
    from PIL import Image

    image = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


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
    while time.monotonic() < until:
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


@dataclass
class Probes:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def record(self, name: str, ok: bool, seconds: float) -> None:
        self.latencies.setdefault(name, []).append(seconds * 1e3)
        if not ok or seconds > PROBE_DEADLINE_S:
            self.failures[name] = self.failures.get(name, 0) + 1

    def summary(self) -> dict:
        return {name: {"probes": len(v), "p99_ms": round(percentile(v, 99), 1),
                       "failed_or_late": self.failures.get(name, 0)}
                for name, v in self.latencies.items()}


async def probe(base: str, trainer: str, feature: str, stop: asyncio.Event) -> Probes:
    """Health probes as the kubelet sends them, until `stop`."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    probes = Probes()
    channels = {"trainer grpc health": grpc.aio.insecure_channel(trainer),
                "feature grpc health": grpc.aio.insecure_channel(feature)}
    stubs = {n: health_pb2_grpc.HealthStub(c) for n, c in channels.items()}
    timeout = aiohttp.ClientTimeout(total=PROBE_DEADLINE_S)
    async with aiohttp.ClientSession(base, timeout=timeout) as http:
        while not stop.is_set():
            for path in ("/healthz", "/readyz"):
                started = time.perf_counter()
                try:
                    async with http.get(path) as r:
                        ok = r.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                probes.record(f"gateway {path}", ok, time.perf_counter() - started)
            for name, stub in stubs.items():
                started = time.perf_counter()
                try:
                    answer = await stub.Check(health_pb2.HealthCheckRequest(),
                                              timeout=PROBE_DEADLINE_S)
                    ok = answer.status == health_pb2.HealthCheckResponse.SERVING
                except grpc.aio.AioRpcError:
                    ok = False
                probes.record(name, ok, time.perf_counter() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_EVERY_S)
    for channel in channels.values():
        await channel.close()
    return probes


async def classify_flood(base: str, shape: Shape, stop: asyncio.Event) -> dict:
    """One annotator's requests of 16 images of 2 MB, `classify_requests` at a time, each
    sent again as soon as it is answered, whatever the answer."""
    image = noise_jpeg(1800, 1400, shape.classify_image_bytes, seed=1)
    answers: dict[str, int] = {}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=timeout) as http:
        await http.post("/api/session", json={"annotator": "flooder"}, headers=CSRF)

        async def loop() -> None:
            while not stop.is_set():
                form = aiohttp.FormData()
                for k in range(shape.classify_images):
                    form.add_field("image", image, filename=f"{k}.jpg",
                                   content_type="image/jpeg")
                try:
                    async with http.post("/api/classify", data=form, headers=CSRF) as r:
                        await r.read()
                        key = str(r.status)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    key = type(exc).__name__
                answers[key] = answers.get(key, 0) + 1

        await asyncio.gather(*(loop() for _ in range(shape.classify_requests)))
    return {"image_bytes": len(image), "answers": answers}


async def stream_flood(feature: str, shape: Shape, stop: asyncio.Event) -> dict:
    """Another team's EmbedStream calls, each streaming batches of large images as fast
    as the service takes them."""
    import grpc

    from hitl.v1 import feature_pb2, feature_pb2_grpc

    image = large_jpeg(shape.stream_side)
    done = {"results": 0, "errors": 0}
    channel = grpc.aio.insecure_channel(feature, options=[
        ("grpc.max_send_message_length", 256 << 20),
        ("grpc.max_receive_message_length", 256 << 20)])
    stub = feature_pb2_grpc.FeatureServiceStub(channel)

    async def one(call_no: int) -> None:
        async def requests():  # type: ignore[no-untyped-def]
            n = 0
            while not stop.is_set():
                n += 1
                # Distinct ids and bypassed-cache-free content: a fresh byte at the end.
                yield feature_pb2.EmbedStreamRequest(images=[
                    feature_pb2.ImageRef(id=f"team-{call_no}-{n}-{k}",
                                         data=image + bytes([n % 256, k]))
                    for k in range(shape.stream_batch)])
        while not stop.is_set():
            try:
                async for reply in stub.EmbedStream(requests()):
                    done["results"] += len(reply.results)
                    if stop.is_set():
                        break
            except grpc.aio.AioRpcError:
                done["errors"] += 1
                await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(one(i)) for i in range(shape.stream_calls)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await channel.close()
    return {"image_pixels": shape.stream_side ** 2, "image_bytes": len(image), **done}


# The phases, each with the same annotators: alone, then each flood on its own (to tell
# which one costs what), then both at once (the target).
PHASES = {"alone": (), "classify_only": ("classify",), "stream_only": ("stream",),
          "flooded": ("classify", "stream")}


async def _phase(base: str, trainer: str, feature: str, shape: Shape,
                 floods: tuple[str, ...], tag: str) -> dict:
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(base, trainer, feature, stop))
    flooders = {"classify_flood": classify_flood(base, shape, stop),
                "stream_flood": stream_flood(feature, shape, stop)}
    running = {name: asyncio.create_task(flooder) for name, flooder in flooders.items()
               if name.split("_")[0] in floods}
    for name, flooder in flooders.items():
        if name not in running:
            flooder.close()  # never started
    if running:
        await asyncio.sleep(1.0)  # the floods are under way before the annotators start
    tally = await annotators(base, shape, shape.seconds, tag)
    stop.set()
    out = {"annotators": tally.summary(), "health": (await prober).summary()}
    for name, task in running.items():
        out[name] = await task
    return out


def _ratio(phase: dict, alone: dict, key: str) -> float:
    return round(phase["annotators"][key] / max(alone["annotators"][key], 1e-9), 2)


async def _measure(base: str, trainer: str, feature: str, shape: Shape) -> dict:
    await annotators(base, shape, shape.warm_up_s, "warm")  # labels enough for a model
    out = {name: await _phase(base, trainer, feature, shape, floods, tag=name)
           for name, floods in PHASES.items()}
    alone = out["alone"]
    out["ratios"] = {f"{name}: {key} / alone": _ratio(out[name], alone, key)
                     for name in PHASES if name != "alone"
                     for key in ("next_image_p99_ms", "next_image_p50_ms", "labels")}
    p99 = _ratio(out["flooded"], alone, "next_image_p99_ms")
    late = sum(h["failed_or_late"] for h in out["flooded"]["health"].values())
    out["targets"] = {"next_image_p99_ratio_at_most": P99_RATIO_TARGET,
                      "next_image_p99_met": p99 <= P99_RATIO_TARGET,
                      "health_probes_failed_or_late": late, "health_met": late == 0}
    return out


def run(short: bool = True, dataset: Path = TILES, cache: Path = CACHE,
        shape: Shape | None = None) -> dict:
    missing = stack.missing_modules("feature_service", "trainer_service", "annotation_gateway")
    if missing:
        return {"status": "missing", "reason": f"{', '.join(missing)} not built"}
    if not dataset.exists():
        return {"status": "skipped", "reason": f"dataset {dataset} not found"}
    shape = shape or (SHORT if short else FULL)
    work = cache / "bench-floods"
    shutil.rmtree(work, ignore_errors=True)
    examples = stratified_subset(read_labelled(dataset), shape.items, seed=0)
    manifest = write_manifest(examples, work / "manifest.csv")
    feature = stack.feature_service(work, cache / "features-lite")
    trainer = stack.trainer_service(work, work / "trainer", feature.address, manifest,
                                    {"TRAINER_VALIDATION_FRACTION": "0.05",
                                     "TRAINER_EVALUATION_FRACTION": "0.05",
                                     "TRAINER_MIN_PER_CLASS": "3",
                                     "TRAINER_PREFETCH": str(shape.items)})
    services = [feature, trainer]
    try:
        feature.start().wait_healthy()
        trainer.start().wait_healthy()
        asyncio.run(stack.wait_for_trainer(trainer.address, stack.pool_embedded,
                                           "embed its pool", 900))
        gateway = stack.gateway(work, trainer.address, feature.address)
        services.append(gateway)
        gateway.start().wait_healthy()
        result = asyncio.run(_measure(f"http://127.0.0.1:{gateway.port}", trainer.address,
                                      feature.address, shape))
    finally:
        for service in reversed(services):
            service.stop()
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
