"""Other teams' clients keep working: the contract only grew. A client built from the
previous feature.proto (kept in `previous_protos/`, compiled into a folder of its own and
run in a process that imports nothing of ours) calls the new feature service for real:
Describe, Embed and Lookup answer it as before, its vector is byte for byte the new
client's, and the evidence at its end is the target class's row of the new per-class
evidence. `buf breaking` finds no breaking change against that proto either."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from hitl.evidence import EVIDENCE_DIM, EVIDENCE_FIELDS, EVIDENCE_VERSION
from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.support import (
    PHOTOS,
    ROOT,
    free_port,
    lite_feature_env,
    require_data,
    require_lite_models,
    running,
)

PREVIOUS = Path(__file__).parent / "previous_protos"
BUF = ROOT / "node_modules" / ".bin" / "buf"

OLD_CLIENT = """
import json, sys
import grpc
from hitl.v1 import feature_pb2, feature_pb2_grpc
assert feature_pb2.__file__.startswith(sys.argv[2]), feature_pb2.__file__
stub = feature_pb2_grpc.FeatureServiceStub(grpc.insecure_channel(sys.argv[1]))
info = stub.Describe(feature_pb2.DescribeRequest(), timeout=30).extractor
data = open(sys.argv[3], "rb").read()
reply = stub.Embed(feature_pb2.EmbedRequest(images=[feature_pb2.ImageRef(id="dog", data=data)]),
                   timeout=120)
found = stub.Lookup(feature_pb2.LookupRequest(ids=["dog"]), timeout=30).results[0]
features = reply.results[0].features
box = features.evidence.box
print(json.dumps({
    "fields": sorted(f.name for f in info.DESCRIPTOR.fields),
    "name": info.name, "version": info.version, "dimension": info.dimension,
    "embedding_dimension": info.embedding_dimension,
    "evidence_dimension": info.evidence_dimension, "target_class": info.target_class,
    "vector": features.vector.hex(), "lookup": found.features.vector.hex(),
    "score": features.evidence.score, "count": features.evidence.count,
    "box": [box.x1, box.y1, box.x2, box.y2]}))
"""


def compile_previous(out: Path) -> Path:
    """The previous contract's Python stubs, in a folder of their own."""
    from grpc_tools import protoc

    out.mkdir(parents=True)
    protos = sorted(str(p.relative_to(PREVIOUS)) for p in PREVIOUS.rglob("*.proto"))
    code = protoc.main(["protoc", f"-I{PREVIOUS}", f"--python_out={out}",
                        f"--grpc_python_out={out}", *protos])
    assert code == 0
    for package in (out / "hitl", out / "hitl" / "v1"):
        (package / "__init__.py").touch()
    return out


def test_the_contract_only_grew_since_the_previous_proto() -> None:
    if not BUF.exists():
        pytest.skip("buf not installed: run `make install`")
    done = subprocess.run([str(BUF), "breaking", "protos", "--against", str(PREVIOUS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # The check can fail: a removed field is a breaking change.
    broken = subprocess.run([str(BUF), "breaking", str(PREVIOUS), "--against", "protos"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0 and "class_evidence" in broken.stdout


def test_a_client_of_the_previous_proto_gets_what_it_always_got(tmp_path: Path) -> None:
    require_lite_models()
    require_data(PHOTOS)
    stubs = compile_previous(tmp_path / "old-client")
    port = free_port()
    dog = PHOTOS / "dog.jpg"
    with running("feature_service", lite_feature_env(port, tmp_path / "cache"),
                 tmp_path / "feature.log", port):
        done = subprocess.run(
            [sys.executable, "-c", OLD_CLIENT, f"127.0.0.1:{port}", str(stubs), str(dog)],
            cwd=stubs, capture_output=True, text=True, timeout=300,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(stubs)})
        assert done.returncode == 0, done.stderr
        old = json.loads(done.stdout)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            info = stub.Describe(feature_pb2.DescribeRequest(), timeout=30).extractor
            reply = stub.Embed(feature_pb2.EmbedRequest(
                images=[feature_pb2.ImageRef(id="dog", data=dog.read_bytes())],
                include_class_evidence=True), timeout=120)
            plain = stub.Embed(feature_pb2.EmbedRequest(
                images=[feature_pb2.ImageRef(id="dog", data=dog.read_bytes())]), timeout=120)
    # The old client sees the fields it knows, with the values it always had.
    assert "detector_classes" not in old["fields"] and "target_class" in old["fields"]
    assert (old["name"], old["version"], old["dimension"]) == (
        info.name, info.version, info.dimension)
    assert old["dimension"] == old["embedding_dimension"] + old["evidence_dimension"]
    assert old["evidence_dimension"] == EVIDENCE_DIM and old["target_class"] == "Bicycle"
    vector = bytes.fromhex(old["vector"])
    assert len(vector) == 4 * old["dimension"] and old["lookup"] == old["vector"]
    # Byte for byte the new client's vector; its end is the target class's evidence row.
    features = reply.results[0].features
    assert vector == features.vector == plain.results[0].features.vector
    assert not plain.results[0].features.class_evidence  # only where asked for
    rows = np.frombuffer(features.class_evidence, "<f4").reshape(-1, EVIDENCE_DIM)
    assert len(rows) == len(info.detector_classes) == 23
    target = [c.name for c in info.detector_classes].index(info.target_class)
    tail = np.frombuffer(vector, "<f4")[-EVIDENCE_DIM:]
    np.testing.assert_array_equal(tail, rows[target])
    assert old["score"] == pytest.approx(float(tail[0])) and old["score"] > 0.5
    assert old["box"] == pytest.approx(tail[1:5].tolist()) and old["count"] == int(tail[9])
    # The new client learns the layout from Describe.
    assert list(info.evidence_fields) == list(EVIDENCE_FIELDS)
    assert info.evidence_version == EVIDENCE_VERSION
    assert info.detector_classes[0].open_images_id == "/m/0199g"
    dog_row = [c.name for c in info.detector_classes].index("Dog")
    assert rows[dog_row, 0] > 0.5
