"""The contract: stubs regenerate identically and import; buf lint is run by `make lint`."""

import hashlib
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def _generate(out: Path) -> dict[str, str]:
    subprocess.run(["make", "--no-print-directory", "protos", f"PROTO_OUT={out}"], cwd=ROOT,
                   check=True, capture_output=True)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "hitl" / "v1").glob("*.py*"))}


def test_make_protos_twice_gives_identical_output(tmp_path):
    first = _generate(tmp_path / "a")
    assert _generate(tmp_path / "b") == first
    installed = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted((ROOT / "hitl" / "v1").glob("*.py*"))}
    assert installed == first, "installed stubs are stale: run `make protos`"
    assert {"feature_pb2.py", "feature_pb2_grpc.py", "feature_pb2.pyi", "trainer_pb2.py",
            "trainer_pb2_grpc.py", "common_pb2.py"} <= set(first)


def test_every_rpc_has_its_own_request_and_response_messages():
    code = (
        "from hitl.v1 import feature_pb2, trainer_pb2\n"
        "for mod in (feature_pb2, trainer_pb2):\n"
        "    for svc in mod.DESCRIPTOR.services_by_name.values():\n"
        "        for m in svc.methods:\n"
        "            assert m.input_type.name == m.name + 'Request', m.full_name\n"
        "            assert m.output_type.name == m.name + 'Response', m.full_name\n"
        "            print(m.full_name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    assert "hitl.v1.FeatureService.Embed" in out
    assert "hitl.v1.TrainerService.AddAnnotation" in out
