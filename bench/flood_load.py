"""What the floods benchmark (`bench.floods`) puts on the services besides its
annotators: its shape, the classify flood of one annotator and the EmbedStream flood of
another team with their images, and the health probes a kubelet would send."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from bench.gateway import CSRF, past, percentile

ANNOTATORS = 8
PROBE_EVERY_S = 0.25
PROBE_DEADLINE_S = 1.0
READY_WITHIN_S = 120.0  # a flood's start at the lowest priority on two busy cores


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
    # The floods' own client processes stand for clients on other machines: on two cores
    # shared with the services they would otherwise take a core for themselves (the
    # classify flood's retry loop alone took one), which no server could give back. At
    # the lowest priority they still send as fast as the cores the services leave allow.
    client_nice: int = 19


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


def multipart_body(image: bytes, count: int) -> tuple[bytes, str]:
    """`count` parts named image of `image`, encoded once: (body, content type). The
    flooding client stands for one elsewhere; re-encoding 32 MB for every request would
    spend this machine's cores on the benchmark's own client, not on the services."""
    boundary = "flood-" + "7" * 24
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            'filename="{k}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n')
    body = b"".join(head.format(k=k).encode() + image + b"\r\n" for k in range(count))
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _say_ready() -> None:
    """Tell the benchmark this flood's payload is built and it is about to send: a phase
    is timed from here, so that a slow start (imports and images made at the lowest
    priority on busy cores) never leaves a phase without its flood."""
    print("ready", flush=True)


async def classify_flood(base: str, shape: Shape, stop: asyncio.Event) -> dict:
    """One annotator's requests of 16 images of 2 MB, `classify_requests` at a time, each
    sent again as soon as it is answered, whatever the answer."""
    image = noise_jpeg(1800, 1400, shape.classify_image_bytes, seed=1)
    body, content_type = multipart_body(image, shape.classify_images)
    answers: dict[str, int] = {}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=timeout) as http:
        # A name of its own in each phase: one phase's flood never finds the rate used
        # up by the one before (which would make the later phase a flood of refusals).
        await http.post("/api/session", json={"annotator": f"flooder-{os.getpid()}"},
                        headers=CSRF)
        _say_ready()

        async def loop() -> None:
            while not stop.is_set():
                try:
                    async with http.post("/api/classify", data=body, headers={
                            **CSRF, "Content-Type": content_type}) as r:
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
                # Distinct ids and content never seen before (bytes after the JPEG's
                # end that decoders ignore), so that no image is a cache hit.
                yield feature_pb2.EmbedStreamRequest(images=[
                    feature_pb2.ImageRef(id=f"team-{call_no}-{n}-{k}",
                                         data=image + f"{call_no}/{n}/{k}".encode())
                    for k in range(shape.stream_batch)])
        while not stop.is_set():
            try:
                async for reply in stub.EmbedStream(requests()):
                    done["results"] += len(reply.results)
            except grpc.aio.AioRpcError:
                done["errors"] += 1
                await asyncio.sleep(0.2)

    _say_ready()
    tasks = [asyncio.create_task(one(i)) for i in range(shape.stream_calls)]
    await stop.wait()
    # A flood that was sending but had no answer yet (a short phase on busy cores) waits
    # for its first one, by the benchmarks' one rule for a timed phase.
    stopped = time.monotonic()
    while not past(stopped, done["results"] > 0):
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await channel.close()
    return {"image_pixels": shape.stream_side ** 2, "image_bytes": len(image), **done}


async def _flood_until_terminated(kind: str, target: str, shape: Shape) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if kind == "classify":
        return await classify_flood(target, shape, stop)
    return await stream_flood(target, shape, stop)


async def flood_process(kind: str, target: str, shape: Shape) -> asyncio.subprocess.Process:
    """A flood (`classify` at a gateway's URL, `stream` at a feature service's address)
    in a process of its own, so that its client work never stalls the annotators' or the
    probes' event loop (a real flood comes from elsewhere); `stop_flood` ends it. Returns
    once the flood says it is sending."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.flood_load", kind, target, json.dumps(asdict(shape)),
        stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), READY_WITHIN_S)
    if line.strip() != b"ready":
        raise RuntimeError(f"the {kind} flood did not start: {line!r}")
    return process


async def stop_flood(process: asyncio.subprocess.Process) -> dict:
    process.send_signal(signal.SIGTERM)
    out, _ = await process.communicate()
    return dict(json.loads(out))


if __name__ == "__main__":
    kind, target, shape = sys.argv[1], sys.argv[2], Shape(**json.loads(sys.argv[3]))
    os.nice(shape.client_nice)
    print(json.dumps(asyncio.run(_flood_until_terminated(kind, target, shape))))
