"""A generic client with none of our stubs (`buf curl` through server reflection) can call
every RPC of both gRPC services."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from hitl.v1 import feature_pb2, trainer_pb2
from tests.foundation.test_lifecycle import _manifest
from tests.support import (
    DATA,
    PHOTOS,
    ROOT,
    free_port,
    lite_feature_env,
    require_data,
    require_lite_models,
    running,
)

BUF = ROOT / "node_modules" / ".bin" / "buf"


def curl(port: int, method: str, body: dict | None = None,
         timeout: str = "60s") -> tuple[int, str]:
    args = [str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--timeout",
            timeout, "--emit-defaults", f"http://127.0.0.1:{port}/{method}"]
    if body is not None:  # on stdin: an image in base64 is too long for an argument
        args += ["-d", "@-"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=90,
                          input=None if body is None else json.dumps(body))
    return done.returncode, done.stdout + done.stderr


def _rpcs(module) -> set[str]:
    return {m.full_name.rsplit(".", 1)[0] + "/" + m.name
            for s in module.DESCRIPTOR.services_by_name.values() for m in s.methods}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not BUF.exists():
        pytest.skip("buf not installed: run `make install`")
    require_lite_models()
    require_data(PHOTOS)
    tmp = tmp_path_factory.mktemp("curl")
    fport, tport = free_port(), free_port()
    feature_env = lite_feature_env(fport, tmp / "cache")
    trainer_env = {"TRAINER_PORT": str(tport), "TRAINER_METRICS_PORT": "0",
                   "TRAINER_DATASET": str(_manifest(tmp)),
                   "TRAINER_DATASET_ROOTS": str(DATA), "TRAINER_DATA_DIR": str(tmp / "t"),
                   "TRAINER_FEATURE_ADDR": f"127.0.0.1:{fport}",
                   # Two labels make a model, so that the model RPCs have one to work on.
                   "TRAINER_MIN_PER_CLASS": "1"}
    with running("feature_service", feature_env, tmp / "feature.log", fport), \
            running("trainer_service", trainer_env, tmp / "trainer.log", tport):
        yield fport, tport, tmp


def test_every_feature_rpc_through_reflection(stack):
    port = stack[0]
    dog = base64.b64encode((PHOTOS / "dog.jpg").read_bytes()).decode()
    calls = {
        "hitl.v1.FeatureService/Describe": {},
        "hitl.v1.FeatureService/Embed": {"images": [{"id": "dog", "data": dog}]},
        "hitl.v1.FeatureService/EmbedStream": {"images": [{"id": "dog2", "data": dog}]},
        "hitl.v1.FeatureService/Lookup": {"ids": ["dog"]},
    }
    assert set(calls) == _rpcs(feature_pb2), "every RPC needs a generic-client check"
    answers = {}
    for method, body in calls.items():
        code, out = curl(port, method, body)
        assert code == 0, f"{method}: {out}"
        answers[method] = out
    assert '"name": "lite"' in answers["hitl.v1.FeatureService/Describe"]
    for method in ("Embed", "EmbedStream", "Lookup"):
        assert '"vector"' in answers[f"hitl.v1.FeatureService/{method}"], method
    assert '"cached": true' in answers["hitl.v1.FeatureService/Lookup"]


def test_every_trainer_rpc_through_reflection(stack):
    _, port, tmp = stack
    code, out = curl(port, "hitl.v1.TrainerService/GetNextItems",
                     {"annotator": "curl", "count": 2})
    assert code == 0, out
    item = json.loads(out)["items"][0]["id"]
    calls = {
        "hitl.v1.TrainerService/AddAnnotation": {"annotationId": "c1", "itemId": item,
                                                 "label": "LABEL_POSITIVE",
                                                 "annotator": "curl"},
        "hitl.v1.TrainerService/UndoAnnotation": {"annotationId": "c1", "annotator": "curl"},
        "hitl.v1.TrainerService/ImportLabels": {"importer": "curl", "labels": [
            {"annotationId": "imported-1", "itemId": "no-such-item",
             "label": "LABEL_NEGATIVE"}]},
        "hitl.v1.TrainerService/GetImage": {"itemId": item, "thumbnail": True},
        "hitl.v1.TrainerService/GetStatus": {},
        "hitl.v1.TrainerService/ExportLabels": {"includeUndone": True},
        "hitl.v1.TrainerService/Retrain": {},
        "hitl.v1.TrainerService/ImportDataset": {"kind": "DATASET_KIND_MANIFEST",
                                                 "location": str(_manifest(tmp, 15))},
    }
    expected = {
        "AddAnnotation": '"annotationId": "c1"', "UndoAnnotation": '"undone": true',
        "ImportLabels": '"refused"',
        "GetImage": '"contentType": "image/', "GetStatus": '"targetF1"',
        "ExportLabels": '"annotationId": "c1"', "ImportDataset": '"progress"',
    }
    for method, body in calls.items():
        code, out = curl(port, method, body)
        name = method.rsplit("/", 1)[1]
        if name == "Retrain":  # too few labels for a model is a status, not a failure
            assert code == 0 or "failed_precondition" in out.lower(), out
            continue
        assert code == 0, f"{method}: {out}"
        assert expected[name] in out, f"{method}: {out}"
    # A server stream that never ends on its own: the first status arrives, then the
    # deadline the client set ends the call (the client's start and its reflection
    # lookup count in it: room for a loaded machine).
    _, out = curl(port, "hitl.v1.TrainerService/WatchStatus", {}, timeout="8s")
    assert '"targetF1"' in out, out

    # A model, then what the models give.
    code, out = curl(port, "hitl.v1.TrainerService/GetNextItems",
                     {"annotator": "curl", "count": 10})
    first, second = [i["id"] for i in json.loads(out)["items"]
                     if i["strategy"] != "STRATEGY_GOLD"][:2]  # gold answers never train
    for n, (item_id, label) in enumerate(((first, "LABEL_POSITIVE"),
                                          (second, "LABEL_NEGATIVE"))):
        assert curl(port, "hitl.v1.TrainerService/AddAnnotation", {
            "annotationId": f"m{n}", "itemId": item_id, "label": label,
            "annotator": "curl"})[0] == 0
    code, out = curl(port, "hitl.v1.TrainerService/Retrain", {})
    assert code == 0 and '"version": "v0001"' in out, out
    dog = base64.b64encode((PHOTOS / "dog.jpg").read_bytes()).decode()
    model_calls = {
        "Classify": ({"images": [{"id": "dog", "data": dog}]}, '"probability"'),
        "ExportPredictions": ({}, '"itemIds"'),
        "ListPredictions": ({"order": "PREDICTION_ORDER_BORDERLINE", "pageSize": 3},
                            '"probability"'),
        "ScoreDataset": ({}, '"scoring"'),
        "ListModels": ({}, '"version": "v0001"'),
        "GetModel": ({"version": "v0001", "format": "MODEL_FORMAT_JSON"}, '"data"'),
        "ActivateModel": ({"version": "v0001"}, '"active": true'),
    }
    # Tasks: listed, one added at run time (it serves at once), then archived.
    model_calls |= {
        "ListTasks": ({}, '"isDefault": true'),
        "CreateTask": ({"task": {"name": "curl-task", "displayName": "Curl"}},
                       '"state": "serving"'),
        "ArchiveTask": ({"task": "curl-task", "archived": True}, '"state": "archived"'),
    }
    for name, (body, wanted) in model_calls.items():
        code, out = curl(port, f"hitl.v1.TrainerService/{name}", body)
        assert code == 0 and wanted in out, f"{name}: {out}"
    assert set(calls) | {f"hitl.v1.TrainerService/{n}" for n in model_calls} | {
        "hitl.v1.TrainerService/GetNextItems",
        "hitl.v1.TrainerService/WatchStatus"} == _rpcs(trainer_pb2)
