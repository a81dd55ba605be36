"""POST /api/classify against real feature (lite) and trainer services, after a model was
trained on the street tiles: uploads and URLs, per-image errors, and the limits."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp

from tests.gateway.conftest import TrainerProcess
from tests.gateway.helpers import CSRF, client, config, error_of, sign_in
from tests.predict.conftest import Feature
from tests.support import PHOTOS

MAX_IMAGES = 4
MAX_BYTES = 1 << 20  # kite.jpg (1.4 MB) is over it


def gateway_config(trainer: TrainerProcess, feature: Feature):  # type: ignore[no-untyped-def]
    return config(trainer_addr=trainer.addr, feature_addr=feature.addr,
                  classify_max_images=MAX_IMAGES, classify_max_bytes=MAX_BYTES,
                  classify_deadline_s=120.0)


def upload(*parts: tuple[str, bytes]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for filename, data in parts:
        form.add_field("image", data, filename=filename, content_type="image/jpeg")
    return form


async def test_an_upload_of_the_dog_photo_is_a_bicycle_and_a_corrupt_one_fails_alone(
        predict_trainer: TrainerProcess, predict_feature: Feature):
    dog = (PHOTOS / "dog.jpg").read_bytes()
    corrupt = dog[:2000]  # a JPEG cut off: not decodable
    async with client(gateway_config(predict_trainer, predict_feature)) as c:
        r = await c.post("/api/classify", headers=CSRF, data=upload(
            ("dog.jpg", dog), ("broken.jpg", corrupt), ("person.jpg",
                                                        (PHOTOS / "person.jpg").read_bytes()),
            ("empty.jpg", b"")))
        assert r.status == 200, await r.text()
        body = await r.json()
    dog_result, broken, person, empty = body["results"]
    assert [x["name"] for x in body["results"]] == ["dog.jpg", "broken.jpg", "person.jpg",
                                                    "empty.jpg"]
    assert dog_result["decision"] == "positive" and dog_result["probability"] >= 0.5
    assert dog_result["model_version"] == body["model_version"]
    assert dog_result["evidence"]["score"] > 0.5 and dog_result["evidence"]["box"] is not None
    assert broken["error"]["code"] == "bad_image" and broken["error"]["retryable"] is False
    assert "probability" not in broken
    assert 0 <= person["probability"] <= 1 and person["decision"] in ("positive", "negative")
    assert empty["error"]["code"] == "invalid"


async def test_urls_are_fetched_and_each_failure_is_its_own(
        predict_trainer: TrainerProcess, predict_feature: Feature, photo_urls: str):
    urls = [f"{photo_urls}/dog.jpg", f"{photo_urls}/no-such.jpg",
            "http://169.254.169.254/latest/meta-data/", f"{photo_urls}/eagle.jpg"]
    async with client(gateway_config(predict_trainer, predict_feature)) as c:
        r = await c.post("/api/classify", headers=CSRF, json={"urls": urls})
        assert r.status == 200, await r.text()
        results = (await r.json())["results"]
    assert [x["name"] for x in results] == urls
    assert results[0]["decision"] == "positive"
    assert results[1]["error"]["code"] == "not_found"
    assert results[2]["error"]["code"] == "forbidden_url"
    assert results[3]["decision"] == "negative"


async def test_limits_and_malformed_requests_get_clear_errors(
        predict_trainer: TrainerProcess, predict_feature: Feature):
    small = (PHOTOS / "person.jpg").read_bytes()
    async with client(gateway_config(predict_trainer, predict_feature)) as c:
        too_big = await c.post("/api/classify", headers=CSRF, data=upload(
            ("kite.jpg", (PHOTOS / "kite.jpg").read_bytes())))
        assert too_big.status == 413 and (await error_of(too_big))["code"] == "too_large"
        many = await c.post("/api/classify", headers=CSRF,
                            data=upload(*[("p.jpg", small)] * (MAX_IMAGES + 1)))
        assert many.status == 400 and (await error_of(many))["code"] == "too_many_images"
        form = aiohttp.FormData()
        form.add_field("picture", small, filename="p.jpg")
        wrong = await c.post("/api/classify", headers=CSRF, data=form)
        assert wrong.status == 400 and (await error_of(wrong))["code"] == "unexpected_part"
        for body, code in [({"urls": []}, "invalid_urls"), ({"urls": "x"}, "invalid_urls"),
                           ({"urls": ["x" * 3000]}, "invalid_urls"), ([1], "invalid_urls")]:
            r = await c.post("/api/classify", headers=CSRF, json=body)
            assert r.status == 400 and (await error_of(r))["code"] == code, body
        text = await c.post("/api/classify", headers={**CSRF, "Content-Type": "text/plain"},
                            data=b"dog")
        assert text.status == 415
        huge_json = await c.post("/api/classify", headers={**CSRF,
                                                           "Content-Type": "application/json"},
                                 data=b'{"urls": ["' + b"x" * 70_000 + b'"]}')
        assert huge_json.status == 413
        no_csrf = await c.post("/api/classify", json={"urls": ["https://example.org/a.jpg"]})
        assert no_csrf.status == 403
        # The gateway still answers a good request afterwards.
        ok = await c.post("/api/classify", headers=CSRF, data=upload(("p.jpg", small)))
        assert ok.status == 200 and "probability" in (await ok.json())["results"][0]


async def test_classify_is_bounded_per_annotator_and_per_process(
        predict_trainer: TrainerProcess, predict_feature: Feature):
    """Seen failing before the bounds existed (there was no setting to configure): one
    annotator could send as many uploads as they liked, all held whole at once. Past
    their rate, past their one upload in flight and past the process's slots, a request
    is refused before its body is read."""
    small = (PHOTOS / "person.jpg").read_bytes()
    # Each annotator may send two a minute; the process takes one upload at a time.
    cfg = dataclasses.replace(gateway_config(predict_trainer, predict_feature),
                              classify_rate="2/minute", upload_requests=1)
    async with client(cfg) as c:
        await sign_in(c, "uploader")
        for _ in range(2):
            r = await c.post("/api/classify", headers=CSRF, data=upload(("p.jpg", small)))
            assert r.status == 200, await r.text()
        third = await c.post("/api/classify", headers=CSRF, data=upload(("p.jpg", small)))
        assert third.status == 429 and int(third.headers["Retry-After"]) >= 1
        await sign_in(c, "someone-else")  # the limit is the annotator's own

        # An upload whose body is still arriving holds the only slot: a second one is
        # answered 503 with Retry-After at once, before its body is read.
        boundary = "hitl-slow-upload"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                "filename=\"slow.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        let_go = asyncio.Event()

        async def slowly():  # type: ignore[no-untyped-def]
            yield head + small[:1000]
            await let_go.wait()
            yield small[1000:] + tail

        slow = asyncio.create_task(c.post(
            "/api/classify", data=slowly(), headers={
                **CSRF, "Content-Type": f"multipart/form-data; boundary={boundary}"}))
        await asyncio.sleep(0.5)
        # The same annotator's second upload at once is theirs to wait for (429) ...
        mine = await c.post("/api/classify", headers=CSRF, data=upload(("p.jpg", small)))
        assert mine.status == 429 and (await error_of(mine))["code"] == "too_many_uploads"
        assert int(mine.headers["Retry-After"]) >= 1
        # ... and another annotator's finds the process's only slot taken (503).
        await sign_in(c, "a-third")
        busy = await c.post("/api/classify", headers=CSRF, data=upload(("p.jpg", small)))
        assert busy.status == 503 and (await error_of(busy))["code"] == "busy"
        assert int(busy.headers["Retry-After"]) >= 1
        let_go.set()
        finished = await slow
        assert finished.status == 200, await finished.text()
        assert "probability" in (await finished.json())["results"][0]


async def test_an_upload_waits_for_room_in_the_byte_budget(
        predict_trainer: TrainerProcess, predict_feature: Feature):
    """Two uploads that together pass the process's byte budget: both are answered (the
    second reads on once the first's bytes are given back); a part larger than the whole
    budget is refused."""
    giraffe = (PHOTOS / "giraffe.jpg").read_bytes()  # 383 KB: two are 3/4 of the budget
    budget = 1 << 20
    cfg = dataclasses.replace(gateway_config(predict_trainer, predict_feature),
                              classify_max_bytes=4 << 20, upload_bytes=budget,
                              uploads_per_caller=2)
    async with client(cfg) as c:
        first, second = await asyncio.gather(*(
            c.post("/api/classify", headers=CSRF,
                   data=upload(("g.jpg", giraffe), ("g.jpg", giraffe)))
            for _ in range(2)))
        assert (first.status, second.status) == (200, 200), await second.text()
        too_big = await c.post("/api/classify", headers=CSRF,
                               data=upload(("big.jpg", b"\xff" * (budget + 1))))
        assert too_big.status == 413


def test_the_trainer_classifies_what_the_feature_service_embedded_as_it_classifies_images(
        predict_trainer: TrainerProcess, predict_feature: Feature) -> None:
    """ClassifyRequest.embedded (the gateway's way: the bytes go to the feature service
    alone) gives what ClassifyRequest.images gives for the same images; the trainer still
    refuses features of another extractor, and a call that sends both."""
    import grpc

    from hitl.v1 import feature_pb2, feature_pb2_grpc, trainer_pb2, trainer_pb2_grpc

    photos = [(PHOTOS / name).read_bytes() for name in ("dog.jpg", "person.jpg")]
    images = [feature_pb2.ImageRef(data=p) for p in photos] + [
        feature_pb2.ImageRef(data=photos[0][:2000])]
    with grpc.insecure_channel(predict_feature.addr) as f, \
            grpc.insecure_channel(predict_trainer.addr) as t:
        trainer = trainer_pb2_grpc.TrainerServiceStub(t)
        embedded = feature_pb2_grpc.FeatureServiceStub(f).Embed(
            feature_pb2.EmbedRequest(images=images, include_class_evidence=True), timeout=60)
        direct = trainer.Classify(trainer_pb2.ClassifyRequest(images=images), timeout=60)
        forwarded = trainer.Classify(trainer_pb2.ClassifyRequest(embedded=embedded),
                                     timeout=60)
        assert forwarded.model_version == direct.model_version
        assert [r.WhichOneof("outcome") for r in forwarded.results] == [
            "classification", "classification", "error"]
        for a, b in zip(forwarded.results, direct.results, strict=True):
            assert a.classification == b.classification and a.error.kind == b.error.kind
        assert forwarded.results[0].classification.evidence.score > 0.5

        other = feature_pb2.EmbedResponse()
        other.CopyFrom(embedded)
        other.extractor.version = "another"
        for request, code in [
                (trainer_pb2.ClassifyRequest(embedded=other), grpc.StatusCode.FAILED_PRECONDITION),
                (trainer_pb2.ClassifyRequest(images=images, embedded=embedded),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (trainer_pb2.ClassifyRequest(embedded=feature_pb2.EmbedResponse(
                    extractor=embedded.extractor)), grpc.StatusCode.INVALID_ARGUMENT)]:
            try:
                trainer.Classify(request, timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() == code, exc
            else:
                raise AssertionError(f"{request} was answered")


async def test_a_feature_service_that_cannot_be_reached_is_a_503_and_nothing_else_breaks(
        predict_trainer: TrainerProcess, predict_feature: Feature):
    """Uploads go from the gateway to the feature service itself: where it is away, an
    upload and a URL both get 503 with a JSON body, the budget is given back (the same
    annotator's next upload is answered, not refused as busy) and labelling goes on."""
    from tools.probes import free_port

    away = Feature(f"127.0.0.1:{free_port()}", predict_feature.log_path)
    small = (PHOTOS / "person.jpg").read_bytes()
    async with client(gateway_config(predict_trainer, away)) as c:
        await sign_in(c, "uploader")
        for _ in range(2):
            r = await c.post("/api/classify", headers=CSRF, data=upload(("p.jpg", small)))
            assert r.status == 503, await r.text()
            assert (await error_of(r))["code"] == "unavailable"
        r = await c.post("/api/classify", headers=CSRF,
                         json={"urls": ["https://example.org/a.jpg"]})
        assert r.status == 503 and (await error_of(r))["code"] == "unavailable"
        items = await c.get("/api/items/next?n=1")
        assert items.status == 200 and (await items.json())["items"]
