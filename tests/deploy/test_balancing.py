"""Client-side round_robin over real feature-service replicas, as a headless Service
gives it in Kubernetes: calls spread over both, keep succeeding when one is killed, and
reach a replica added after the clients connected within the servers' maximum connection
age.

The channel is the one every client uses (hitl.channels.open_channel); the target lists
the replicas' addresses the way DNS answers for a headless Service (the last test asks a
real DNS server, dnslib's, that answers as cluster DNS does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from hitl.channels import open_channel
from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.support import (
    TILES,
    ServiceProcess,
    free_port,
    require_data,
    require_lite_models,
    running,
)

SERVICE = "hitl.v1.FeatureService"
EMBED = f"/{SERVICE}/Embed"
CALLS = 16


def items_answered(metrics_port: int) -> int:
    """Images the replica answered, from its own Prometheus metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return int(sum(float(m.group(1)) for m in
                   re.finditer(r'^feature_items_total\{[^}]*\} (\S+)$', text, re.M)))


def embed_calls_logged(replica: ServiceProcess) -> int:
    """Embed calls in the replica's JSON log (one "rpc" line per call)."""
    count = 0
    for line in replica.log().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            count += entry.get("event") == "rpc" and entry.get("method") == EMBED
    return count


@contextlib.contextmanager
def replicas(tmp_path: Path, count: int) -> Iterator[list[tuple[ServiceProcess, int, int]]]:
    with contextlib.ExitStack() as stack:
        started = []
        for index in range(count):
            port, metrics_port = free_port(), free_port()
            env = {"FEATURE_EXTRACTOR": "lite", "FEATURE_DEVICE": "cpu",
                   "FEATURE_PORT": str(port), "FEATURE_METRICS_PORT": str(metrics_port),
                   "FEATURE_CACHE_DIR": str(tmp_path / f"cache-{index}"),
                   "FEATURE_DECODE_WORKERS": "1", "FEATURE_GRACE_S": "2"}
            process = stack.enter_context(running(
                "feature_service", env, tmp_path / f"replica-{index}.log", port))
            started.append((process, port, metrics_port))
        yield started


async def embed_tiles(stub: feature_pb2_grpc.FeatureServiceStub,
                      tiles: list[Path]) -> None:
    for tile in tiles:
        reply = await stub.Embed(feature_pb2.EmbedRequest(
            images=[feature_pb2.ImageRef(id=tile.name, data=tile.read_bytes())]))
        (result,) = reply.results
        assert result.WhichOneof("outcome") == "features", result
        assert not result.features.cached


async def test_calls_spread_over_replicas_and_survive_a_killed_one(tmp_path: Path) -> None:
    require_data(TILES)
    require_lite_models()
    tiles = sorted((TILES / "images").glob("*.jpg"))[: 2 * CALLS]
    assert len(tiles) == 2 * CALLS, f"too few tiles under {TILES / 'images'}"
    with replicas(tmp_path, 2) as started:
        (first, _, first_metrics), (second, _, second_metrics) = started
        target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, port, _ in started)
        async with open_channel(target, SERVICE) as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            await embed_tiles(stub, tiles[:CALLS])
            spread = [items_answered(first_metrics), items_answered(second_metrics)]
            assert sum(spread) == CALLS
            # round_robin: each new call goes to the next ready replica.
            assert min(spread) >= CALLS // 4, f"calls did not spread: {spread}"
            assert [embed_calls_logged(first), embed_calls_logged(second)] == spread

        # The contrast: gRPC's default policy (pick_first) sends every call of a channel
        # to one replica, which is what a ClusterIP Service amounts to.
        async with grpc.aio.insecure_channel(target) as plain:
            await embed_tiles(feature_pb2_grpc.FeatureServiceStub(plain),
                              tiles[CALLS:CALLS + 4])
        after = [items_answered(first_metrics), items_answered(second_metrics)]
        assert sorted(a - b for a, b in zip(after, spread, strict=True)) == [0, 4], after

        async with open_channel(target, SERVICE) as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            await embed_tiles(stub, tiles[CALLS + 4:CALLS + 6])
            first.kill()  # no graceful stop: the process is simply gone
            before = items_answered(second_metrics)
            await embed_tiles(stub, tiles[CALLS + 6:])
            assert items_answered(second_metrics) == before + CALLS - 6


class Replicas(BaseResolver):
    """A DNS server's answers for the headless Service: one A record per replica, as
    Kubernetes gives them; `addresses` changes as replicas come and go."""

    def __init__(self, name: str) -> None:
        self.name, self.addresses = name, list[str]()

    def resolve(self, request, handler):  # type: ignore[no-untyped-def]
        reply = request.reply()
        if request.q.qtype == QTYPE.A and str(request.q.qname).rstrip(".") == self.name:
            for address in list(self.addresses):
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=0))
        return reply


def calls_answered(metrics_port: int) -> int:
    """Describe calls the replica answered, from its own Prometheus metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return int(sum(float(m.group(1)) for m in re.finditer(
        r'^grpc_server_handled_total\{[^}]*grpc_method="/hitl.v1.FeatureService/Describe"'
        r'[^}]*\} (\S+)$', text, re.M)))


async def test_a_replica_added_after_clients_connect_gets_calls_within_the_connection_age(
        tmp_path: Path) -> None:
    """What the feature HPA relies on: clients already connected over a dns:/// target
    reach a replica started after them, because each server ends its connections at
    FEATURE_MAX_CONNECTION_AGE_S and the client re-resolves when it reconnects (with no
    maximum age, this test fails: the new replica never gets a call). Three real
    replicas on one port at three loopback addresses, a real DNS server answering for
    them, and the clients' own channel (hitl.channels.open_channel)."""
    require_lite_models()
    age_s = 6.0  # above the channels' 5 s minimum between two resolutions
    replicas = Replicas("feature.hitl.test")
    dns = DNSServer(replicas, address="127.0.0.1", port=0,
                    logger=DNSLogger("-request,-reply,-truncated,-recv,-send,-data"))
    dns.start_thread()
    port = free_port()
    hosts = ("127.0.0.2", "127.0.0.3", "127.0.0.4")

    def replica(index: int) -> tuple[contextlib.AbstractContextManager, int]:
        metrics_port = free_port()
        env = {"FEATURE_EXTRACTOR": "lite", "FEATURE_DEVICE": "cpu",
               "FEATURE_HOST": hosts[index], "FEATURE_PORT": str(port),
               "FEATURE_METRICS_PORT": str(metrics_port),
               "FEATURE_CACHE_DIR": str(tmp_path / f"cache-{index}"),
               "FEATURE_DECODE_WORKERS": "1", "FEATURE_GRACE_S": "2",
               "FEATURE_MAX_CONNECTION_AGE_S": str(age_s),
               "FEATURE_MAX_CONNECTION_AGE_GRACE_S": "2"}
        return running("feature_service", env, tmp_path / f"replica-{index}.log", port,
                       host=hosts[index]), metrics_port

    target = f"dns://127.0.0.1:{dns.server.server_address[1]}/{replicas.name}:{port}"
    try:
        with contextlib.ExitStack() as stack:
            metrics = []
            for index in range(2):
                manager, metrics_port = replica(index)
                stack.enter_context(manager)
                replicas.addresses.append(hosts[index])
                metrics.append(metrics_port)
            clients = [open_channel(target, SERVICE) for _ in range(2)]
            stubs = [feature_pb2_grpc.FeatureServiceStub(c) for c in clients]

            async def call_all() -> None:
                for stub in stubs:
                    await stub.Describe(feature_pb2.DescribeRequest())

            # Both are in use (round robin sends to the connections that are up, so the
            # second may take a moment to connect on a loaded machine).
            started = time.monotonic()
            while not all(calls_answered(m) > 0 for m in metrics):
                assert time.monotonic() - started < 30, "one replica got no calls"
                await call_all()

            # The autoscaler adds a replica; once it is ready, DNS lists it.
            manager, third_metrics = replica(2)
            stack.enter_context(manager)
            replicas.addresses.append(hosts[2])
            ready = time.monotonic()
            while calls_answered(third_metrics) == 0:
                # Within the connection age and a reconnection (slow on a loaded
                # machine); without a maximum age it never gets one.
                assert time.monotonic() - ready < 2 * age_s + 10.0, (
                    "the new replica got no calls from the connected clients within "
                    f"twice the connection age ({age_s} s) and 10 s")
                await call_all()
                await asyncio.sleep(0.05)
            for client in clients:
                await client.close()
    finally:
        dns.stop()
