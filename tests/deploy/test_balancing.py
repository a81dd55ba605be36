"""Client-side round_robin over two real feature-service replicas, as a headless Service
gives it in Kubernetes: calls spread over both, and keep succeeding when one is killed.

The channel is the one every client uses (hitl.channels.open_channel); the target lists
the two replicas' addresses the way DNS answers for a headless Service.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hitl.channels import open_channel
from tests.support import (
    TILES,
    ServiceProcess,
    free_port,
    require_data,
    require_lite_models,
    running,
)

pytest.importorskip("feature_service.server", reason="feature service not in the tree yet")
from hitl.v1 import feature_pb2, feature_pb2_grpc

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
                   "FEATURE_DECODE_THREADS": "1", "FEATURE_GRACE_S": "2"}
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
