"""Size limits: gRPC messages above the configured maximum are refused on both ends
with RESOURCE_EXHAUSTED and a message that says so; HTTP bodies above the gateway's
limit get 413 with a JSON error. The services keep serving afterwards."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import requests

from hitl.channels import open_channel
from hitl.v1 import common_pb2, feature_pb2, feature_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from tests.reliability import report
from tests.reliability import stack as rs
from tests.reliability.fixtures import FEATURE_MAX_MESSAGE_BYTES, TRAINER_MAX_MESSAGE_BYTES
from tests.reliability.stack import CSRF


def _code_and_details(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details() or ""


def test_grpc_requests_above_the_server_limit(shared_feature, shared_trainer):
    with rs.channel(shared_feature.address, options=[
            ("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        big = feature_pb2.ImageRef(id="big", data=b"\xff" * (FEATURE_MAX_MESSAGE_BYTES + 1))
        code, details = _code_and_details(
            lambda: stub.Embed(feature_pb2.EmbedRequest(images=[big]), timeout=30))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert "larger than max" in details or "message" in details.lower(), details
        assert stub.Describe(feature_pb2.DescribeRequest(), timeout=10).extractor.name
    report.inputs("gRPC request above the feature limit", code.name)

    with rs.channel(shared_trainer.address, options=[
            ("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        request = trainer_pb2.AddAnnotationRequest(
            annotation_id="a" * 32, item_id="x" * (TRAINER_MAX_MESSAGE_BYTES + 1),
            label=common_pb2.LABEL_POSITIVE, annotator="big")
        code, details = _code_and_details(lambda: stub.AddAnnotation(request, timeout=30))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10).status.label_id
    report.inputs("gRPC request above the trainer limit", code.name)


def test_grpc_responses_above_the_client_limit(shared_feature):
    async def scenario() -> tuple[grpc.StatusCode, str]:
        channel = open_channel(shared_feature.address, rs.FEATURE, max_message_bytes=1024,
                               security=rs.ADMIN)
        try:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            ids = [f"warm-missing-{n}" for n in range(200)]  # ~200 errors: > 1 KiB back
            try:
                await stub.Lookup(feature_pb2.LookupRequest(ids=ids), timeout=10)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            return grpc.StatusCode.OK, ""
        finally:
            await channel.close()

    code, details = asyncio.run(scenario())
    report.inputs("gRPC response above the client limit", code.name)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert "larger than max" in details or "message" in details.lower(), details


def test_http_bodies_above_the_limit_get_413(shared_gateway):
    base = f"http://127.0.0.1:{shared_gateway.port}"
    session = requests.Session()
    assert session.post(base + "/api/session", json={"annotator": "sizes"},
                        headers=CSRF, timeout=10).status_code == 200
    huge = {"id": "a" * 32, "item_id": "x", "label": "positive", "pad": "x" * 100_000}
    declared = session.post(base + "/api/annotations", json=huge, headers=CSRF, timeout=10)
    assert declared.status_code == 413, declared.text[:200]
    assert declared.json()["error"]["code"] == "request_entity_too_large"

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"pad": "'
        for _ in range(64):
            yield b"x" * 4096
        yield b'"}'

    chunked = session.post(base + "/api/annotations", data=chunks(), timeout=10,
                           headers={**CSRF, "Content-Type": "application/json"})
    assert chunked.status_code == 413, chunked.text[:200]
    long_url = session.get(base + "/api/items/" + "x" * 20_000 + "/image", timeout=10)
    assert 400 <= long_url.status_code < 500
    big_header = session.get(base + "/api/status", headers={"X-Junk": "x" * 20_000},
                             timeout=10)
    assert 400 <= big_header.status_code < 500
    report.inputs("HTTP body above the limit (declared length)", str(declared.status_code))
    report.inputs("HTTP body above the limit (chunked)", str(chunked.status_code))
    report.inputs("HTTP URL of 20 kB", str(long_url.status_code))
    report.inputs("HTTP header of 20 kB", str(big_header.status_code))
    assert session.get(base + "/api/status", timeout=10).status_code == 200
