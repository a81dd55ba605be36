"""The feature service over real gRPC on a real port, with a real LMDB cache on disk.

The models are TinyExtractor (tests/feature/helpers.py) so that these tests are about
the service: caching, batching, bad input, limits and streaming.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from feature_service.decode import decode
from feature_service.server import SERVICE_NAME
from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.feature.conftest import ImageServer, Running
from tests.feature.helpers import (
    HTML,
    POISON,
    SVG,
    TinyExtractor,
    animated_gif,
    cmyk_jpeg,
    encode,
    exif_rotated_jpeg,
    gradient,
    png_declaring,
    sixteen_bit_png,
    solid,
)

OK = "features"
E = feature_pb2


def by_data(data: bytes, id: str = "") -> feature_pb2.ImageRef:
    return feature_pb2.ImageRef(id=id, data=data)


def by_url(url: str, id: str = "") -> feature_pb2.ImageRef:
    return feature_pb2.ImageRef(id=id, url=url)


def vector_of(result: feature_pb2.EmbedResult) -> np.ndarray:
    assert result.WhichOneof("outcome") == OK, result.error
    return np.frombuffer(result.features.vector, dtype="<f4")


def outcome(result: feature_pb2.EmbedResult) -> str:
    if result.WhichOneof("outcome") == OK:
        return OK
    return E.ErrorKind.Name(result.error.kind)


async def test_describe_names_the_extractor(feature: Running) -> None:
    info = (await feature.stub.Describe(E.DescribeRequest())).extractor
    assert (info.name, info.version, info.device) == ("tiny", "1", "cpu")
    assert info.dimension == feature.extractor.info.dimension
    assert info.dimension == info.embedding_dimension + info.evidence_dimension
    assert info.evidence_dimension == 10 and info.target_class == "bicycle"


async def test_embed_returns_the_extractor_features_and_evidence(feature: Running) -> None:
    image = gradient(seed=3)
    response = await feature.stub.Embed(E.EmbedRequest(images=[by_data(encode(image, "PNG"))]))
    (result,) = response.results
    assert response.extractor.name == "tiny"
    np.testing.assert_allclose(vector_of(result), feature.extractor.expected(image), rtol=1e-6)
    evidence = result.features.evidence
    assert evidence.score == pytest.approx(vector_of(result)[-10])
    assert (evidence.box.x1, evidence.box.y2) == pytest.approx((0.1, 0.7))
    assert result.id.startswith("sha256:") and not result.features.cached


async def test_second_call_is_a_cache_hit_with_identical_bytes(feature: Running) -> None:
    request = E.EmbedRequest(images=[by_data(encode(gradient(seed=4), "PNG"), id="item-4")])
    first = (await feature.stub.Embed(request)).results[0]
    batches = len(feature.extractor.batches)
    second = (await feature.stub.Embed(request)).results[0]
    assert second.features.cached and not first.features.cached
    assert second.features.vector == first.features.vector
    assert len(feature.extractor.batches) == batches  # no model call
    looked_up = (await feature.stub.Lookup(E.LookupRequest(ids=["item-4", "nope"]))).results
    assert looked_up[0].features.vector == first.features.vector
    assert outcome(looked_up[1]) == "ERROR_KIND_NOT_CACHED"
    bypass = (await feature.stub.Embed(E.EmbedRequest(images=request.images,
                                                      bypass_cache=True))).results[0]
    assert not bypass.features.cached and bypass.features.vector == first.features.vector


async def test_the_cache_survives_a_restart(service_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = await service_factory()
    request = E.EmbedRequest(images=[by_data(encode(gradient(seed=5), "PNG"), id="x")])
    computed = (await first.stub.Embed(request)).results[0]
    await first.service.stop(0)
    second = await service_factory()
    warm_up = list(second.extractor.batches)
    cached = (await second.stub.Embed(request)).results[0]
    assert cached.features.cached and cached.features.vector == computed.features.vector
    assert second.extractor.batches == warm_up


async def test_a_new_extractor_version_never_reads_old_features(service_factory) -> None:  # type: ignore[no-untyped-def]
    old = await service_factory(TinyExtractor(version="1"))
    request = E.EmbedRequest(images=[by_data(encode(gradient(seed=6), "PNG"), id="y")])
    await old.stub.Embed(request)
    await old.service.stop(0)
    new = await service_factory(TinyExtractor(version="2"))
    assert not (await new.stub.Embed(request)).results[0].features.cached


BAD_CORPUS = [
    ("zero-bytes", b"", "ERROR_KIND_BAD_IMAGE"),
    ("truncated-jpeg", encode(gradient((300, 300)), "JPEG")[:700], "ERROR_KIND_BAD_IMAGE"),
    ("html", HTML, "ERROR_KIND_BAD_IMAGE"),
    ("svg", SVG, "ERROR_KIND_BAD_IMAGE"),
    ("png-50000x50000", png_declaring(50_000, 50_000), "ERROR_KIND_TOO_LARGE"),
    ("one-pixel", encode(solid((9, 9, 9), (1, 1)), "PNG"), OK),
    ("cmyk-jpeg", cmyk_jpeg(), OK),
    ("16-bit-png", sixteen_bit_png(), OK),
    ("animated-gif", animated_gif(), OK),
    ("exif-rotated-jpeg", exif_rotated_jpeg(), OK),
]


async def test_bad_input_corpus_gets_per_item_outcomes_and_the_service_keeps_serving(
        feature: Running) -> None:
    request = E.EmbedRequest(images=[by_data(data, id=name) for name, data, _ in BAD_CORPUS])
    results = (await feature.stub.Embed(request)).results
    assert [(r.id, outcome(r)) for r in results] == [(n, k) for n, _, k in BAD_CORPUS]
    for (_, data, kind), result in zip(BAD_CORPUS, results, strict=True):
        if kind == OK:  # exactly what the decoded, upright RGB image gives
            expected = feature.extractor.expected(decode(data, max_pixels=10**7, min_side=8))
            np.testing.assert_allclose(vector_of(result), expected, rtol=1e-6)
        else:
            assert result.error.message and not result.error.retryable
    # Undecodable images are remembered, oversized ones are not (limits may change).
    again = (await feature.stub.Embed(request)).results
    assert [outcome(r) for r in again] == [k for _, _, k in BAD_CORPUS]
    lookup = (await feature.stub.Lookup(E.LookupRequest(ids=["html", "png-50000x50000"])))
    assert [outcome(r) for r in lookup.results] == ["ERROR_KIND_BAD_IMAGE",
                                                    "ERROR_KIND_NOT_CACHED"]
    await test_embed_returns_the_extractor_features_and_evidence(feature)


async def test_url_corpus_is_refused_or_cut_off(service_factory, image_server: ImageServer) -> None:  # type: ignore[no-untyped-def]
    strict = await service_factory(url_allowlist=())
    local = await service_factory(url_allowlist=("127.0.0.1",))
    cases = [
        (strict, image_server.url("/img/a.png"), "ERROR_KIND_FORBIDDEN_URL"),
        (local, image_server.url("/img/a.png"), OK),
        (local, "http://[::1]/x.jpg", "ERROR_KIND_FORBIDDEN_URL"),
        (local, "http://10.0.0.1/x.jpg", "ERROR_KIND_FORBIDDEN_URL"),
        (local, "http://169.254.169.254/latest/meta-data/", "ERROR_KIND_FORBIDDEN_URL"),
        (local, "file:///etc/passwd", "ERROR_KIND_FORBIDDEN_URL"),
        (local, "gopher://127.0.0.1:70/_x", "ERROR_KIND_FORBIDDEN_URL"),
        (local, image_server.url("/redirect?to=http://169.254.169.254/"),
         "ERROR_KIND_FORBIDDEN_URL"),
        (local, image_server.url("/slow"), "ERROR_KIND_TIMEOUT"),
        (local, image_server.url("/endless"), "ERROR_KIND_TOO_LARGE"),
        (local, image_server.url("/html"), "ERROR_KIND_BAD_IMAGE"),
        (local, image_server.url("/status/404"), "ERROR_KIND_NOT_FOUND"),
        (local, image_server.url("/status/503"), "ERROR_KIND_UPSTREAM"),
        (local, "not a url", "ERROR_KIND_FORBIDDEN_URL"),
    ]
    results = await asyncio.gather(*(
        svc.stub.Embed(E.EmbedRequest(images=[by_url(url)])) for svc, url, _ in cases))
    got = [outcome(r.results[0]) for r in results]
    assert got == [kind for *_, kind in cases]
    for response, (*_, kind) in zip(results, cases, strict=True):
        error = response.results[0].error
        assert error.retryable == (kind in ("ERROR_KIND_TIMEOUT", "ERROR_KIND_UPSTREAM"))
    await test_embed_returns_the_extractor_features_and_evidence(local)


async def test_requests_past_the_byte_budget_are_refused_or_wait_and_nothing_is_lost(
        service_factory, image_server: ImageServer) -> None:  # type: ignore[no-untyped-def]
    # One caller may use the whole budget here: this is about the service's own bound
    # (test_fair_share.py holds the per-caller one).
    # The slow URL holds its call for read_timeout_s: long enough that the checks below
    # run while it is still under way, on a loaded machine too.
    feature = await service_factory(max_inflight_bytes=1 << 20, caller_max_bytes=1 << 20,
                                    read_timeout_s=6.0)
    ballast = by_data(b"\0" * (600 << 10), id="ballast")  # 600 KB, not an image
    busy = asyncio.ensure_future(feature.stub.Embed(E.EmbedRequest(
        images=[by_url(image_server.url("/slow")), ballast])))
    while image_server.hits.get("/slow", 0) < 1:  # the first call is being worked on
        await asyncio.sleep(0.01)
    image = by_data(encode(gradient(seed=3), "PNG") + b"\0" * (600 << 10), id="after")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await feature.stub.Embed(E.EmbedRequest(images=[image]))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "FEATURE_MAX_INFLIGHT_BYTES" in (refused.value.details() or "")
    # Small calls still fit, and cheap calls are never refused.
    small = by_data(encode(gradient(seed=4), "PNG"), id="small")
    assert outcome((await feature.stub.Embed(E.EmbedRequest(images=[small]))).results[0]) == OK
    assert (await feature.stub.Describe(E.DescribeRequest())).extractor.name
    assert len((await feature.stub.Lookup(E.LookupRequest(ids=["after"]))).results) == 1
    # A stream waits for room instead: flow control holds its sender back.
    stream = asyncio.ensure_future(_collect(feature.stub.EmbedStream(
        iter([E.EmbedStreamRequest(images=[image])]))))
    await asyncio.sleep(0.2)
    assert not stream.done() and not busy.done()
    assert outcome((await busy).results[0]) == "ERROR_KIND_TIMEOUT"
    assert [outcome(r) for m in await stream for r in m.results] == [OK]
    # Room again: the refused request goes through now.
    assert outcome((await feature.stub.Embed(E.EmbedRequest(images=[image]))).results[0]) == OK
    assert REGISTRY.get_sample_value("feature_refused_calls_total") >= 1


async def _collect(call) -> list:  # type: ignore[no-untyped-def]
    return [message async for message in call]


async def test_remembered_and_retryable_url_failures(feature: Running,
                                                     image_server: ImageServer) -> None:
    missing, failing = image_server.url("/status/404"), image_server.url("/status/500")
    for _ in range(3):
        await feature.stub.Embed(E.EmbedRequest(images=[by_url(missing), by_url(failing)]))
    assert image_server.hits["/status/404"] == 1  # NOT_FOUND remembered
    assert image_server.hits["/status/500"] == 3  # UPSTREAM retried every time
    # The same key later sent as bytes is embedded, not answered from the URL's failure.
    key = (await feature.stub.Embed(E.EmbedRequest(images=[by_url(missing)]))).results[0].id
    image = encode(gradient(seed=9), "PNG")
    result = (await feature.stub.Embed(E.EmbedRequest(images=[by_data(image, id=key)]))).results
    assert outcome(result[0]) == OK


async def test_one_bad_item_in_64_leaves_the_other_63_correct(feature: Running) -> None:
    images = [gradient(seed=100 + i) for i in range(64)]
    refs = [by_data(encode(im, "PNG"), id=f"i{i}") for i, im in enumerate(images)]
    refs[17] = by_data(b"GIF89a broken", id="i17")
    results = (await feature.stub.Embed(E.EmbedRequest(images=refs))).results
    assert [r.id for r in results] == [f"i{i}" for i in range(64)]
    assert outcome(results[17]) == "ERROR_KIND_BAD_IMAGE"
    for i, (image, result) in enumerate(zip(images, results, strict=True)):
        if i != 17:
            np.testing.assert_allclose(vector_of(result), feature.extractor.expected(image),
                                       rtol=1e-6)


async def test_an_image_that_breaks_the_model_fails_alone(feature: Running) -> None:
    images = [gradient(seed=200 + i) for i in range(8)]
    refs = [by_data(encode(im, "PNG")) for im in images]
    refs.insert(3, by_data(encode(solid(POISON), "PNG")))
    results = (await feature.stub.Embed(E.EmbedRequest(images=refs))).results
    assert outcome(results[3]) == "ERROR_KIND_INTERNAL" and results[3].error.retryable
    assert [outcome(r) for i, r in enumerate(results) if i != 3] == [OK] * 8


def batch_histogram() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("feature_batch_size_count") or 0.0
    total = REGISTRY.get_sample_value("feature_batch_size_sum") or 0.0
    return count, total


async def test_concurrent_callers_are_batched_together(service_factory) -> None:  # type: ignore[no-untyped-def]
    running = await service_factory(TinyExtractor(delay_s=0.05), max_batch=16,
                                    max_wait_ms=50.0)
    count_before, total_before = batch_histogram()
    callers = 48
    requests = [E.EmbedRequest(images=[by_data(encode(gradient(seed=300 + i), "PNG"))])
                for i in range(callers)]
    results = await asyncio.gather(*(running.stub.Embed(r) for r in requests))
    assert all(outcome(r.results[0]) == OK for r in results)
    count, total = batch_histogram()
    batches = count - count_before
    assert total - total_before == callers
    assert batches <= callers / 4, f"{callers} callers ran in {batches} batches"
    assert max(running.extractor.batches) > 1


async def test_a_large_request_keeps_few_decoded_images_in_memory(service_factory) -> None:  # type: ignore[no-untyped-def]
    extractor = TinyExtractor(delay_s=0.02)
    running = await service_factory(extractor, max_batch=4, decode_workers=2)
    refs = [by_data(encode(gradient(seed=500 + i), "PNG")) for i in range(128)]
    results = (await running.stub.Embed(E.EmbedRequest(images=refs))).results
    assert [outcome(r) for r in results] == [OK] * 128
    assert extractor.most_waiting <= 3 * 4 + 2, extractor.most_waiting


async def test_concurrent_requests_for_one_key_compute_once(feature: Running) -> None:
    request = E.EmbedRequest(images=[by_data(encode(gradient(seed=7), "PNG"), id="same")])
    before = sum(feature.extractor.batches)
    results = await asyncio.gather(*(feature.stub.Embed(request) for _ in range(10)))
    assert len({r.results[0].features.vector for r in results}) == 1
    assert sum(feature.extractor.batches) - before == 1


async def test_too_many_items_is_a_clear_request_error(feature: Running) -> None:
    refs = [by_data(b"x")] * 129
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await feature.stub.Embed(E.EmbedRequest(images=refs))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "FEATURE_MAX_ITEMS" in (caught.value.details() or "")
    await test_describe_names_the_extractor(feature)


async def test_oversized_images_and_messages_are_refused(service_factory) -> None:  # type: ignore[no-untyped-def]
    running = await service_factory(max_image_bytes=1000, max_message_bytes=1 << 20)
    big = encode(gradient((200, 200), seed=8), "PNG")
    assert len(big) > 1000
    result = (await running.stub.Embed(E.EmbedRequest(images=[by_data(big)]))).results[0]
    assert outcome(result) == "ERROR_KIND_TOO_LARGE"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.stub.Embed(E.EmbedRequest(images=[by_data(b"\0" * (2 << 20))]))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    small = encode(solid((1, 2, 3), (4, 4)), "PNG")
    result = (await running.stub.Embed(E.EmbedRequest(images=[by_data(small)]))).results[0]
    assert outcome(result) == OK


async def test_items_without_a_source_are_invalid(feature: Running) -> None:
    results = (await feature.stub.Embed(E.EmbedRequest(images=[
        feature_pb2.ImageRef(id="empty"), by_data(encode(solid((1, 1, 1)), "PNG")),
        feature_pb2.ImageRef()]))).results
    assert [outcome(r) for r in results] == ["ERROR_KIND_INVALID", OK, "ERROR_KIND_INVALID"]


async def test_embed_stream_returns_every_item(feature: Running) -> None:
    images = [gradient(seed=400 + i) for i in range(40)]

    async def requests():  # type: ignore[no-untyped-def]
        for start in range(0, 40, 8):
            yield E.EmbedStreamRequest(images=[
                by_data(encode(im, "PNG"), id=f"s{start + j}")
                for j, im in enumerate(images[start:start + 8])])

    got: dict[str, np.ndarray] = {}
    async for response in feature.stub.EmbedStream(requests()):
        for result in response.results:
            got[result.id] = vector_of(result)
    assert sorted(got) == sorted(f"s{i}" for i in range(40))
    for i, image in enumerate(images):
        np.testing.assert_allclose(got[f"s{i}"], feature.extractor.expected(image), rtol=1e-6)


async def test_embed_stream_applies_backpressure(service_factory) -> None:  # type: ignore[no-untyped-def]
    """A client that stops reading stops the server's work: at most `stream_inflight`
    messages are worked on, and finished ones wait in gRPC's flow-control window (each
    response here is 1 MB, far beyond the window) instead of piling up in memory."""
    extractor = TinyExtractor(padding=65_536)
    running = await service_factory(extractor, stream_inflight=2, max_items=4)
    warm_up = sum(extractor.batches)

    async def requests():  # type: ignore[no-untyped-def]
        for i in range(100):
            yield E.EmbedStreamRequest(images=[
                by_data(encode(gradient((20, 20), seed=1000 + 4 * i + j), "PNG"))
                for j in range(4)])

    # A fixed 64 KiB receive window (no BDP growth), so "unread" means "not sent".
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.service.port}", options=[
        ("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", 64 << 20)])
    call = feature_pb2_grpc.FeatureServiceStub(channel).EmbedStream(requests())
    first = await call.read()
    assert len(first.results) == 4
    await asyncio.sleep(1.0)  # the client reads nothing more meanwhile
    processed = sum(extractor.batches) - warm_up
    assert processed <= 4 * 4, f"{processed} images computed for 1 message read"
    call.cancel()
    await channel.close()
    await test_describe_names_the_extractor(running)


async def test_reflection_lists_the_service(feature: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(feature.channel)

    async def ask():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for response in stub.ServerReflectionInfo(ask()):
        names = {s.name for s in response.list_services_response.service}
        assert SERVICE_NAME in names
        break


async def test_stop_drains_calls_in_flight_within_the_grace_period(service_factory) -> None:  # type: ignore[no-untyped-def]
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    running = await service_factory(TinyExtractor(delay_s=0.5), grace_s=10.0)
    health = health_pb2_grpc.HealthStub(running.channel)
    check = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
    assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
    request = E.EmbedRequest(images=[by_data(encode(gradient(seed=600 + i), "PNG"))
                                     for i in range(4)])
    in_flight = asyncio.ensure_future(running.stub.Embed(request))
    while not running.extractor.batches:  # until the call is in the model
        await asyncio.sleep(0.01)
    started = asyncio.get_running_loop().time()
    await running.service.stop()
    # Stopped once the call was answered, before the grace period ran out.
    assert asyncio.get_running_loop().time() - started < 10.0
    assert [outcome(r) for r in (await in_flight).results] == [OK] * 4
    with pytest.raises(grpc.aio.AioRpcError):
        await running.stub.Describe(E.DescribeRequest(), timeout=1)


async def test_an_oversized_stream_message_ends_the_stream_with_a_clear_error(
        feature: Running) -> None:
    async def requests():  # type: ignore[no-untyped-def]
        yield E.EmbedStreamRequest(images=[by_data(encode(solid((5, 5, 5)), "PNG"))])
        yield E.EmbedStreamRequest(images=[by_data(b"x")] * 129)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in feature.stub.EmbedStream(requests()):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "FEATURE_MAX_ITEMS" in (caught.value.details() or "")
    await test_describe_names_the_extractor(feature)
