"""How a gRPC service is exposed (hitl.security, shared by both services; the feature
service stands for both here): TLS and mutual TLS with certificates made by openssl,
caller tokens from a folder or as digests, reflection switched off, and the limit on
calls served at once. Real servers on real ports."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2_grpc

from feature_service.config import Config
from feature_service.server import SERVICE_NAME
from hitl.channels import ClientSecurity, open_channel
from hitl.config import ConfigError, load
from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.feature.helpers import TinyExtractor, encode, gradient

TOKEN = "transport-test-token-01"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def issue(folder: Path, name: str, subject_alt_names: str) -> None:
    """A key and a certificate for `name`, signed by the test CA in `folder`."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    (folder / f"{name}.ext").write_text(f"subjectAltName={subject_alt_names}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
            cwd=folder)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj",
            "/CN=hitl test CA", cwd=folder)
    issue(folder, "server", "DNS:localhost,IP:127.0.0.1")
    issue(folder, "client", "DNS:trainer")
    return folder


async def describe(port: int, security: ClientSecurity | None = None,
                   target: str = "localhost") -> grpc.StatusCode:
    async with open_channel(f"{target}:{port}", SERVICE_NAME, default_deadline_s=5,
                            security=security) as channel:
        try:
            await feature_pb2_grpc.FeatureServiceStub(channel).Describe(
                feature_pb2.DescribeRequest())
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def test_mutual_tls_needs_the_client_certificate(service_factory, pki: Path) -> None:  # type: ignore[no-untyped-def]
    running = await service_factory(
        caller_tokens=(("trainer", TOKEN),), tls_cert=str(pki / "server.crt"),
        tls_key=str(pki / "server.key"), tls_client_ca=str(pki / "ca.crt"))
    port = running.service.port
    full = ClientSecurity(TOKEN, str(pki / "ca.crt"), str(pki / "client.crt"),
                          str(pki / "client.key"))
    assert await describe(port, full) == grpc.StatusCode.OK
    assert await describe(port, full, target="127.0.0.1") == grpc.StatusCode.OK
    # Without a client certificate, or in plaintext, no connection is made at all.
    assert await describe(port, ClientSecurity(TOKEN, str(pki / "ca.crt"))) == (
        grpc.StatusCode.UNAVAILABLE)
    assert await describe(port, ClientSecurity(TOKEN)) == grpc.StatusCode.UNAVAILABLE
    # With the certificate but without the token, the call is refused.
    no_token = ClientSecurity("", str(pki / "ca.crt"), str(pki / "client.crt"),
                              str(pki / "client.key"))
    assert await describe(port, no_token) == grpc.StatusCode.UNAUTHENTICATED


async def test_tls_without_client_certificates(service_factory, pki: Path) -> None:  # type: ignore[no-untyped-def]
    running = await service_factory(tls_cert=str(pki / "server.crt"),
                                    tls_key=str(pki / "server.key"))
    port = running.service.port
    assert await describe(port, ClientSecurity(ca_file=str(pki / "ca.crt"))) == (
        grpc.StatusCode.OK)
    # A CA that did not sign the server's certificate is not trusted.
    assert await describe(port, ClientSecurity(ca_file=str(pki / "client.crt"))) == (
        grpc.StatusCode.UNAVAILABLE)


async def test_tokens_from_a_folder_and_as_digests(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "callers"
    folder.mkdir()
    (folder / "team-a").write_text(TOKEN + "\n")
    other = "a-token-only-its-owner-knows"
    (folder / "team-b").write_text("sha256:" + hashlib.sha256(other.encode()).hexdigest())
    (folder / "..data").write_text("kubernetes bookkeeping, not a caller")
    running = await service_factory(caller_tokens_dir=str(folder))
    port = running.service.port
    for token in (TOKEN, other):
        assert await describe(port, ClientSecurity(token), "127.0.0.1") == grpc.StatusCode.OK
    assert await describe(port, ClientSecurity("sha256:" + hashlib.sha256(
        other.encode()).hexdigest()), "127.0.0.1") == grpc.StatusCode.UNAUTHENTICATED


async def test_reflection_can_be_switched_off(service_factory) -> None:  # type: ignore[no-untyped-def]
    running = await service_factory(reflection=False)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.service.port}") as channel:
        # No request is sent: the server refuses the method from its name alone, and a
        # request written while the refusal arrives fails on the client's side with
        # INTERNAL ("Failed execute_batch"), which once failed this test in CI.
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
        # (Where reflection is on, the call waits for requests: the wait below times out.)
        assert await asyncio.wait_for(call.code(), 10) == grpc.StatusCode.UNIMPLEMENTED
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_calls_past_the_concurrency_limit_are_refused_at_once(service_factory) -> None:  # type: ignore[no-untyped-def]
    """Past FEATURE_MAX_CONCURRENT_RPCS open data-plane calls, the next is refused at
    once; Describe and health are not counted, and answer."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    running = await service_factory(TinyExtractor(), max_concurrent_rpcs=2,
                                    caller_max_calls=10)
    stub = running.stub
    release = asyncio.Event()

    async def held() -> AsyncIterator[feature_pb2.EmbedStreamRequest]:
        yield feature_pb2.EmbedStreamRequest(images=[feature_pb2.ImageRef(
            data=encode(gradient(seed=1), "PNG"))])
        await release.wait()  # the stream stays open, and counts, until released

    streams = [stub.EmbedStream(held(), timeout=30) for _ in range(2)]
    for stream in streams:
        await stream.read()  # both are being served
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Lookup(feature_pb2.LookupRequest(ids=["x"]))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "FEATURE_MAX_CONCURRENT_RPCS" in (refused.value.details() or "")
    assert (await stub.Describe(feature_pb2.DescribeRequest())).extractor.name == "tiny"
    health = await health_pb2_grpc.HealthStub(running.channel).Check(
        health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    release.set()
    for stream in streams:
        _ = [r async for r in stream]
    assert len((await stub.Lookup(feature_pb2.LookupRequest(ids=["x"]))).results) == 1


@pytest.mark.parametrize("env,message", [
    ({"FEATURE_TLS_CERT": "/x.crt"}, "FEATURE_TLS_CERT and FEATURE_TLS_KEY go together"),
    ({"FEATURE_TLS_CLIENT_CA": "/ca.crt"}, "mutual TLS needs"),
    ({"FEATURE_CALLER_TOKENS": "Team A=long-enough-token-123"}, "caller name"),
    ({"FEATURE_CALLER_TOKENS": "team=short"}, "at least 16 characters"),
    ({"FEATURE_MAX_CONCURRENT_RPCS": "-1"}, "must be >= 0"),
])
def test_bad_transport_settings_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load(Config, env)
    assert "short" not in str(raised.value) and "long-enough" not in str(raised.value)
