"""Hypothesis-generated request messages for every RPC of the feature and trainer
services (except the ones that start long work: importing a dataset, retraining, scoring
the whole dataset), sent with the admin's token: the services answer each with a sensible
status code, never an internal error, and keep serving. Undecodable bytes in place of a
message are INVALID_ARGUMENT too. Callers without a known token are refused on every RPC
(health checking aside), and callers other than the gateway and admins on the trainer's."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl.v1 import feature_pb2, trainer_pb2, trainer_pb2_grpc
from tests.reliability import report
from tests.reliability import stack as rs
from tests.support import health_status

# Codes a caller can act on. INTERNAL, UNKNOWN, UNAVAILABLE or DATA_LOSS would mean the
# service broke on the input.
SENSIBLE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.ALREADY_EXISTS}
SKIPPED = {"ImportDataset", "Retrain", "WatchStatus", "ScoreDataset"}
URLS = st.sampled_from([
    "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:1/x.jpg", "file:///etc/passwd",
    "gopher://127.0.0.1:70/_x", "http://[::1]/x", "javascript:alert(1)", "http://", "",
    "http://10.0.0.1/x.jpg", "ftp://example.com/x.jpg", "x" * 3000])
INTS = {FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
        FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1)}


def message_strategy(descriptor, depth: int = 0) -> st.SearchStrategy:  # type: ignore[no-untyped-def]
    """Any message of this type: every field filled or left out, hostile values."""
    fields = {}
    oneof_fields = {f.name for o in descriptor.oneofs for f in o.fields}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 2 or field.message_type.full_name.startswith("google.protobuf"):
                continue
            value = message_strategy(field.message_type, depth + 1)
        elif field.type == FieldDescriptor.TYPE_STRING:
            value = URLS if field.name == "url" else st.text(max_size=300)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            value = st.binary(max_size=2000)
        elif field.type == FieldDescriptor.TYPE_BOOL:
            value = st.booleans()
        elif field.type == FieldDescriptor.TYPE_ENUM:
            value = st.integers(-3, 12)  # known values and unknown ones
        elif field.type in INTS:
            value = st.integers(*INTS[field.type])
        elif field.type == FieldDescriptor.TYPE_DOUBLE:
            value = st.floats(allow_nan=True, allow_infinity=True)
        else:
            continue
        if field.is_repeated:
            value = st.lists(value, max_size=8)
        fields[field.name] = st.none() | value
    cls = _message_class(descriptor)

    @st.composite
    def build(draw):  # type: ignore[no-untyped-def]
        message = cls()
        chosen_oneof = False
        for name, strategy in fields.items():
            value = draw(strategy)
            if value is None or (name in oneof_fields and chosen_oneof):
                continue
            chosen_oneof |= name in oneof_fields
            field = descriptor.fields_by_name[name]
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if field.is_repeated:
                    getattr(message, name).extend(value)
                else:
                    getattr(message, name).CopyFrom(value)
            elif field.is_repeated:
                getattr(message, name).extend(value)
            else:
                setattr(message, name, value)
        return message

    return build()


def _message_class(descriptor):  # type: ignore[no-untyped-def]
    from google.protobuf import message_factory
    return message_factory.GetMessageClass(descriptor)


def _methods(service) -> list:  # type: ignore[no-untyped-def]
    return [m for m in service.methods if m.name not in SKIPPED]


def _call(channel: grpc.Channel, service, method, request) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    path = f"/{service.full_name}/{method.name}"
    response_class = _message_class(method.output_type)
    deserialize = response_class.FromString
    try:
        if method.client_streaming:
            call = channel.stream_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=deserialize)
            for _ in call(iter([request, request]), timeout=30):
                pass
        elif method.server_streaming:
            call = channel.unary_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=deserialize)
            for _ in call(request, timeout=30):
                pass
        else:
            channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=deserialize)(request, timeout=30)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _fuzz(address: str, port: int, service, examples: int) -> dict[str, set]:  # type: ignore[no-untyped-def]
    seen: dict[str, set] = {}
    with rs.channel(address) as channel:
        for method in _methods(service):
            codes: set = seen.setdefault(method.name, set())

            def checker(method, codes):  # type: ignore[no-untyped-def]
                @settings(max_examples=examples, deadline=None, database=None,
                          derandomize=True, suppress_health_check=list(HealthCheck))
                @given(message_strategy(method.input_type))
                def check(request):  # type: ignore[no-untyped-def]
                    code = _call(channel, service, method, request)
                    codes.add(code)
                    assert code in SENSIBLE, (method.name, code, request)
                return check

            checker(method, codes)()
            report.inputs(f"gRPC fuzz {service.name}.{method.name}",
                          "/".join(sorted(c.name for c in codes)), examples)
    assert health_status(port) == health_pb2.HealthCheckResponse.SERVING
    return seen


def test_feature_service_request_fuzz(shared_feature, shape):
    service = feature_pb2.DESCRIPTOR.services_by_name["FeatureService"]
    seen = _fuzz(shared_feature.address, shared_feature.port, service,
                 shape.pick(25, 200))
    assert grpc.StatusCode.OK in seen["Describe"]


def test_trainer_service_request_fuzz(shared_trainer, shape):
    service = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]
    seen = _fuzz(shared_trainer.address, shared_trainer.port, service,
                 shape.pick(25, 200))
    assert grpc.StatusCode.INVALID_ARGUMENT in seen["AddAnnotation"]


def test_undecodable_request_bytes(shared_feature, shared_trainer):
    targets = [(shared_feature, feature_pb2.DESCRIPTOR.services_by_name["FeatureService"]),
               (shared_trainer, trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"])]
    for process, service in targets:
        with rs.channel(process.address) as channel:
            for method in _methods(service):
                if method.client_streaming or method.server_streaming:
                    continue
                call = channel.unary_unary(f"/{service.full_name}/{method.name}")
                codes = set()
                # A length past the end, a truncated length, an invalid varint.
                for data in (b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05ab", b"\xff" * 16):
                    with pytest.raises(grpc.RpcError) as refused:
                        call(data, timeout=10)
                    codes.add(refused.value.code())
                    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert "not a valid message" in (refused.value.details() or "")
                report.inputs(f"undecodable bytes {service.name}.{method.name}",
                              "/".join(sorted(c.name for c in codes)), 3)
        assert health_status(process.port) == health_pb2.HealthCheckResponse.SERVING


def _codes(address: str, service, token: str | None) -> dict[str, grpc.StatusCode]:  # type: ignore[no-untyped-def]
    """The status of an empty request to every RPC of `service`, with `token` (None:
    no credentials at all)."""
    channel = rs.channel(address, token) if token else grpc.insecure_channel(address)
    with channel:
        return {m.name: _call(channel, service, m, _message_class(m.input_type)())
                for m in service.methods if m.name != "WatchStatus" or token is None}


def test_callers_without_a_known_token_are_refused_everywhere_but_health(shared_feature,
                                                                         shared_trainer):
    feature = feature_pb2.DESCRIPTOR.services_by_name["FeatureService"]
    trainer = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]
    for process, service in ((shared_feature, feature), (shared_trainer, trainer)):
        for token in (None, "not-a-known-token-at-all"):
            codes = _codes(process.address, service, token)
            assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, codes
        with grpc.insecure_channel(process.address) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                    timeout=10))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert health_status(process.port) == health_pb2.HealthCheckResponse.SERVING
        report.inputs(f"gRPC without a known token: {service.name}", "UNAUTHENTICATED",
                      2 * len(service.methods))


def test_only_the_gateway_and_admins_reach_the_trainers_data(shared_trainer, shared_feature):
    trainer = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]
    team = _codes(shared_trainer.address, trainer, rs.TOKENS["team"])
    assert team.pop("GetStatus") == grpc.StatusCode.OK
    assert team.pop("ListTasks") == grpc.StatusCode.OK  # the questions, like the status
    assert set(team.values()) == {grpc.StatusCode.PERMISSION_DENIED}, team
    # Another team may use the feature service, under its own name.
    feature = feature_pb2.DESCRIPTOR.services_by_name["FeatureService"]
    assert _codes(shared_feature.address, feature, rs.TOKENS["team"])["Describe"] == (
        grpc.StatusCode.OK)
    # The gateway's identity reaches what the annotation page needs.
    with rs.channel(shared_trainer.address, rs.TOKENS["gateway"]) as channel:
        leased = trainer_pb2_grpc.TrainerServiceStub(channel).GetNextItems(
            trainer_pb2.GetNextItemsRequest(annotator="gateway-check", count=1), timeout=10)
    assert len(leased.items) == 1
    report.inputs("trainer RPCs as another team", "PERMISSION_DENIED", len(team))


def test_datasets_are_downloaded_from_configured_sources_only(shared_trainer):
    """Even the admin cannot point the trainer's downloads elsewhere."""
    with rs.channel(shared_trainer.address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        for location in ("http://169.254.169.254/latest/meta-data",
                         "https://attacker.example/openimages"):
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.ImportDataset(trainer_pb2.ImportDatasetRequest(
                    kind=trainer_pb2.DATASET_KIND_OPEN_IMAGES, location=location), timeout=10))
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "not under a configured download source" in (refused.value.details() or "")
        assert stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10).status.label_id
    report.inputs("ImportDataset from an unconfigured URL", "PERMISSION_DENIED", 2)
