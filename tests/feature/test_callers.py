"""Several callers of one feature service: each gets the features of its own images,
whatever ids and URLs the others use, and is known by its token (in the logs and the
metrics). Real photos, a real LMDB cache and real gRPC; the two-caller reproduction runs
the real `lite` models in a real process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from feature_service.server import SERVICE_NAME
from hitl.channels import ClientSecurity, open_channel
from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.feature.conftest import ImageServer, Running
from tests.feature.helpers import TinyExtractor
from tests.feature.test_service import OK, by_data, by_url, outcome, vector_of
from tests.support import (
    PHOTOS,
    free_port,
    lite_feature_env,
    require_data,
    require_lite_models,
    running,
)

E = feature_pb2
TOKENS = {"team-a": "team-a-token-0123456789", "team-b": "team-b-token-0123456789"}
Stubs = dict[str, feature_pb2_grpc.FeatureServiceStub]


def photo(name: str) -> bytes:
    return (require_data(PHOTOS) / name).read_bytes()


@pytest.fixture
async def callers(service_factory) -> AsyncIterator[tuple[Running, Stubs]]:  # type: ignore[no-untyped-def]
    """A feature service that knows team-a and team-b, and a stub for each."""
    running = await service_factory(caller_tokens=tuple(TOKENS.items()),
                                    max_image_bytes=4 << 20, max_pixels=20_000_000)
    channels = {name: open_channel(f"127.0.0.1:{running.service.port}", SERVICE_NAME,
                                   security=ClientSecurity(token=token))
                for name, token in TOKENS.items()}
    yield running, {name: feature_pb2_grpc.FeatureServiceStub(c) for name, c in channels.items()}
    for channel in channels.values():
        await channel.close()


async def embed(stub: feature_pb2_grpc.FeatureServiceStub, *refs: feature_pb2.ImageRef,
                bypass: bool = False) -> list[feature_pb2.EmbedResult]:
    return list((await stub.Embed(E.EmbedRequest(images=refs, bypass_cache=bypass))).results)


async def lookup(stub: feature_pb2_grpc.FeatureServiceStub, *ids: str
                 ) -> list[feature_pb2.EmbedResult]:
    return list((await stub.Lookup(E.LookupRequest(ids=ids))).results)


class Drifting(TinyExtractor):
    """Every model call adds a little more to its vectors, as a GPU's arithmetic may
    differ between two runs: a recomputation is told apart from a cached answer."""

    def extract(self, prepared: list[object]) -> np.ndarray:
        return super().extract(prepared) + 1e-3 * len(self.batches)


async def test_one_id_two_callers_two_images_in_process(callers) -> None:  # type: ignore[no-untyped-def]
    _, stubs = callers
    (a,) = await embed(stubs["team-a"], by_data(photo("dog.jpg"), id="img-1"))
    (b,) = await embed(stubs["team-b"], by_data(photo("horses.jpg"), id="img-1"))
    assert a.id == b.id == "img-1" and not b.features.cached
    assert vector_of(a).tolist() != vector_of(b).tolist()
    (a_again,) = await lookup(stubs["team-a"], "img-1")
    (b_again,) = await lookup(stubs["team-b"], "img-1")
    assert a_again.features.vector == a.features.vector
    assert b_again.features.vector == b.features.vector


async def test_the_same_image_from_two_callers_is_computed_once(callers) -> None:  # type: ignore[no-untyped-def]
    running, stubs = callers
    (a,) = await embed(stubs["team-a"], by_data(photo("kite.jpg"), id="a-kite"))
    batches = list(running.extractor.batches)
    (b,) = await embed(stubs["team-b"], by_data(photo("kite.jpg"), id="b-kite"))
    assert b.features.cached and b.features.vector == a.features.vector
    assert running.extractor.batches == batches
    # ... but each caller's ids are its own.
    (unknown,) = await lookup(stubs["team-b"], "a-kite")
    assert outcome(unknown) == "ERROR_KIND_NOT_CACHED"


async def test_a_url_names_for_each_caller_what_it_fetched(callers, image_server: ImageServer
                                                           ) -> None:  # type: ignore[no-untyped-def]
    _, stubs = callers
    url = image_server.url("/img/photo.jpg")
    image_server.images["photo.jpg"] = photo("giraffe.jpg")
    (a,) = await embed(stubs["team-a"], by_url(url, id="p"))
    image_server.images["photo.jpg"] = photo("eagle.jpg")  # the same URL, new content
    (b,) = await embed(stubs["team-b"], by_url(url, id="p"))
    assert image_server.hits["/img/photo.jpg"] == 2
    assert vector_of(a).tolist() != vector_of(b).tolist()
    # A repeated URL is answered from the caller's own fetch, without fetching again.
    (a_again,) = await embed(stubs["team-a"], by_url(url))
    assert a_again.features.cached and a_again.features.vector == a.features.vector
    assert image_server.hits["/img/photo.jpg"] == 2
    # bypass_cache fetches afresh, for this caller only.
    (a_fresh,) = await embed(stubs["team-a"], by_url(url, id="p"), bypass=True)
    assert a_fresh.features.vector == b.features.vector
    assert image_server.hits["/img/photo.jpg"] == 3


async def test_a_remembered_failure_stays_with_its_caller(callers, image_server: ImageServer
                                                          ) -> None:  # type: ignore[no-untyped-def]
    _, stubs = callers
    url = image_server.url("/img/late.jpg")
    (missing,) = await embed(stubs["team-a"], by_url(url, id="late"))
    assert outcome(missing) == "ERROR_KIND_NOT_FOUND"
    image_server.images["late.jpg"] = photo("person.jpg")
    (found,) = await embed(stubs["team-b"], by_url(url, id="late"))
    assert outcome(found) == OK and not found.features.cached
    (still,) = await embed(stubs["team-a"], by_url(url, id="late"))
    assert outcome(still) == "ERROR_KIND_NOT_FOUND" and still.error.message == "HTTP 404"
    # A bad image under one caller's id says nothing about another caller's id.
    (bad,) = await embed(stubs["team-a"], by_data(b"not an image", id="x"))
    (good,) = await embed(stubs["team-b"], by_data(photo("scream.jpg"), id="x"))
    assert (outcome(bad), outcome(good)) == ("ERROR_KIND_BAD_IMAGE", OK)
    assert [outcome(r) for r in await lookup(stubs["team-a"], "x", "late")] == [
        "ERROR_KIND_BAD_IMAGE", "ERROR_KIND_NOT_FOUND"]


async def test_bypass_cache_recomputes_without_changing_what_others_get(service_factory
                                                                        ) -> None:  # type: ignore[no-untyped-def]
    running = await service_factory(Drifting(), caller_tokens=tuple(TOKENS.items()),
                                    max_image_bytes=4 << 20, max_pixels=20_000_000)
    channels = {name: open_channel(f"127.0.0.1:{running.service.port}", SERVICE_NAME,
                                   security=ClientSecurity(token=token))
                for name, token in TOKENS.items()}
    stubs = {name: feature_pb2_grpc.FeatureServiceStub(c) for name, c in channels.items()}
    image = by_data(photo("giraffe.jpg"), id="g")
    (first,) = await embed(stubs["team-a"], image)
    (fresh,) = await embed(stubs["team-b"], image, bypass=True)
    assert not fresh.features.cached and fresh.features.vector != first.features.vector
    (a_again,) = await embed(stubs["team-a"], image)
    (a_lookup,) = await lookup(stubs["team-a"], "g")
    assert a_again.features.cached
    assert a_again.features.vector == a_lookup.features.vector == first.features.vector
    for channel in channels.values():
        await channel.close()


async def test_the_caller_is_in_the_log_and_the_metrics(callers, caplog) -> None:  # type: ignore[no-untyped-def]
    running, stubs = callers
    sample = ("grpc_server_handled_total",
              {"grpc_method": f"/{SERVICE_NAME}/Describe", "grpc_code": "OK",
               "caller": "team-b"})
    before = REGISTRY.get_sample_value(sample[0], sample[1]) or 0.0
    with caplog.at_level(logging.INFO, logger="hitl.grpc_server"):
        await stubs["team-b"].Describe(E.DescribeRequest())
    assert REGISTRY.get_sample_value(sample[0], sample[1]) == before + 1
    (line,) = [r for r in caplog.records if getattr(r, "method", "").endswith("/Describe")]
    assert line.caller == "team-b"  # type: ignore[attr-defined]
    plain = running.channel  # the fixture's channel presents no token
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await feature_pb2_grpc.FeatureServiceStub(plain).Describe(E.DescribeRequest())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert REGISTRY.get_sample_value(sample[0], {**sample[1], "caller": "unauthenticated",
                                                 "grpc_code": "UNAUTHENTICATED"}) >= 1


@pytest.fixture(scope="module")
def lite_with_callers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    require_lite_models()
    require_data(PHOTOS)
    tmp = tmp_path_factory.mktemp("lite-callers")
    port = free_port()
    env = lite_feature_env(
        port, tmp / "cache", FEATURE_DEVICE="cpu", LOG_LEVEL="WARNING",
        FEATURE_CALLER_TOKENS=",".join(f"{k}={v}" for k, v in TOKENS.items()))
    with running("feature_service", env, tmp / "feature.log", port):
        yield port


async def test_two_callers_same_id_different_photos_each_get_their_own(
        lite_with_callers: int) -> None:
    """The reproduction: one team sends a photo with a bicycle as "img-1", another a
    photo of horses under the same id; each gets the vector of its own photo."""
    stubs, channels = {}, []
    for name, token in TOKENS.items():
        channel = open_channel(f"127.0.0.1:{lite_with_callers}", SERVICE_NAME,
                               default_deadline_s=120, security=ClientSecurity(token=token))
        channels.append(channel)
        stubs[name] = feature_pb2_grpc.FeatureServiceStub(channel)
    try:
        (bicycle,) = await embed(stubs["team-a"], by_data(photo("dog.jpg"), id="img-1"))
        (horses,) = await embed(stubs["team-b"], by_data(photo("horses.jpg"), id="img-1"))
        assert not horses.features.cached
        assert bicycle.features.evidence.score > 0.5 > horses.features.evidence.score
        # Each equals that photo's own vector, as any caller embedding it alone gets.
        (alone,) = await embed(stubs["team-a"], by_data(photo("horses.jpg")))
        assert alone.features.vector == horses.features.vector
        assert alone.features.vector != bicycle.features.vector
        looked_up = await asyncio.gather(lookup(stubs["team-a"], "img-1"),
                                         lookup(stubs["team-b"], "img-1"))
        assert [r[0].features.vector for r in looked_up] == [bicycle.features.vector,
                                                           horses.features.vector]
    finally:
        for channel in channels:
            await channel.close()



async def test_streams_carry_the_callers_token_and_names(callers) -> None:  # type: ignore[no-untyped-def]
    _, stubs = callers

    async def requests() -> AsyncIterator[feature_pb2.EmbedStreamRequest]:
        yield E.EmbedStreamRequest(images=[by_data(photo("eagle.jpg"), id="streamed")])

    results = [r async for reply in stubs["team-a"].EmbedStream(requests())
               for r in reply.results]
    assert [outcome(r) for r in results] == [OK]
    (named,) = await lookup(stubs["team-a"], "streamed")
    assert named.features.vector == results[0].features.vector
    (other,) = await lookup(stubs["team-b"], "streamed")
    assert outcome(other) == "ERROR_KIND_NOT_CACHED"
