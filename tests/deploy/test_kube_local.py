"""tools/kube_local.py: the rendered local overlay as `podman kube play` runs it. Only what
that runtime needs changes; everything else the pods run is what the manifests say."""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import pod_spec, render, workloads
from tools.kube_local import DATASET_MOUNT, Options, Plan, adapt, generated_secrets

# What the adaptation may touch in a container; the rest must be as rendered.
ADAPTED = {"ports", "env", "volumeMounts"}


def rendered() -> list[dict[str, Any]]:
    return copy.deepcopy(list(render("local")))


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    (tmp_path / "labels.csv").write_text("filename,label\n")
    objects = rendered()
    return adapt(objects, generated_secrets(objects), Options(dataset=tmp_path / "labels.csv"))


def pods(plan: Plan, app: str) -> list[dict[str, Any]]:
    return [p.document for p in plan.pods if p.app == app]


def test_each_replica_is_a_pod_with_its_own_address(plan: Plan) -> None:
    expected = {w["metadata"]["name"]: w["spec"].get("replicas", 1) for w in workloads("local")}
    assert {app: len(pods(plan, app)) for app in expected} == expected
    names = [p.name for p in plan.pods]
    assert len(set(names)) == len(names) and "hitl-feature-1" in names
    assert len(set(plan.addresses)) == len(plan.addresses)
    network = ipaddress.ip_network(Options().subnet)
    assert all(ipaddress.ip_address(a) in network for a in plan.addresses)
    assert [d["kind"] for d in plan.documents].count("Pod") == len(plan.pods)
    assert {d["kind"] for d in plan.documents} == {"ConfigMap", "Pod"}


def test_what_the_manifests_say_is_what_runs(plan: Plan) -> None:
    written_maps = {o["metadata"]["name"]: o["data"] for o in rendered()
                    if o["kind"] == "ConfigMap"}
    for configmap in (d for d in plan.documents if d["kind"] == "ConfigMap"):
        data = dict(configmap["data"])
        if configmap["metadata"]["name"].startswith("trainer-config"):
            data["TRAINER_DATASET"] = written_maps[configmap["metadata"]["name"]][
                "TRAINER_DATASET"]  # the demo's dataset: the test below
        assert data == written_maps[configmap["metadata"]["name"]]
    for workload in workloads("local"):
        template = pod_spec(workload)
        for pod in pods(plan, workload["metadata"]["name"]):
            for key in ("securityContext", "automountServiceAccountToken",
                        "terminationGracePeriodSeconds"):
                assert pod["spec"].get(key) == template.get(key), key
            assert pod["metadata"]["labels"] == workload["spec"]["template"]["metadata"]["labels"]
            for ran, written in zip(pod["spec"]["containers"], template["containers"],
                                    strict=True):
                for key in set(written) - ADAPTED:
                    assert ran[key] == written[key], f"{pod['metadata']['name']}: {key}"
                assert ran.get("env", [])[:len(written.get("env", []))] == [
                    {**e, "valueFrom": {"secretKeyRef": {
                        **e["valueFrom"]["secretKeyRef"],
                        "name": "hitl-" + e["valueFrom"]["secretKeyRef"]["name"]}}}
                    for e in written.get("env", [])]
                assert [m["mountPath"] for m in ran["volumeMounts"]][
                    :len(written["volumeMounts"])] == [
                    m["mountPath"] for m in written["volumeMounts"]]


def test_services_resolve_to_the_pods_they_select(plan: Plan) -> None:
    by_app = {app: sorted(p.address for p in plan.pods if p.app == app)
              for app in ("feature", "trainer", "gateway")}
    for pod in plan.pods:
        names: dict[str, list[str]] = {}
        for alias in pod.document["spec"]["hostAliases"]:
            for name in alias["hostnames"]:
                names.setdefault(name, []).append(alias["ip"])
        # The clients' targets (dns:///feature:50051, dns:///trainer:50052) and the
        # cluster's full names.
        assert sorted(names["feature"]) == by_app["feature"] and len(by_app["feature"]) == 2
        assert names["trainer"] == by_app["trainer"]
        assert sorted(names["feature.hitl.svc.cluster.local"]) == by_app["feature"]


def test_secrets_are_generated_and_take_the_shapes_podman_reads(plan: Plan) -> None:
    committed = {o["metadata"]["name"]: o["data"] for o in rendered() if o["kind"] == "Secret"}
    env_secret = next(v for k, v in plan.secrets.items() if k.startswith("hitl-grpc-callers"))
    flat = {k: base64.b64decode(v).decode() for k, v in json.loads(env_secret).items()}
    callers = next(v for k, v in committed.items() if k.startswith("grpc-callers"))
    assert set(flat) == set(callers)
    assert not set(flat.values()) & {base64.b64decode(v).decode() for v in callers.values()}
    # The trainer's volume holds only the items its manifest names; the feature's all.
    trainer = json.loads(plan.secrets["hitl-trainer-0-callers"])["data"]
    feature = json.loads(plan.secrets["hitl-feature-0-callers"])["data"]
    assert set(trainer) == {"gateway", "admin"} and set(feature) == set(callers)
    assert trainer["gateway"] == flat["gateway"] == feature["gateway"]
    for pod in plan.pods:
        for volume in pod.document["spec"]["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["optional"] is False
                assert volume["secret"]["secretName"] in plan.secrets
    assert all(d["kind"] != "Secret" for d in plan.documents)


def test_volumes_are_per_pod_or_claimed(plan: Plan) -> None:
    empty_dirs = [v["name"] for p in plan.pods for v in p.document["spec"]["volumes"]
                  if "emptyDir" in v]
    assert len(empty_dirs) == len(plan.pods) == len(set(empty_dirs))
    assert sorted(plan.claims) == ["hitl-cache-feature-0", "hitl-cache-feature-1",
                                   "hitl-trainer-data"]


def test_host_ports_do_not_collide_and_stay_on_loopback(plan: Plan) -> None:
    # podman 4.3 publishes every container port: each gets a port of its own.
    published = [(port["hostIP"], port["hostPort"]) for p in plan.pods
                 for c in p.document["spec"]["containers"] for port in c["ports"]]
    assert len(published) == len(set(published)) == 2 * len(plan.pods)
    assert {ip for ip, _ in published} == {"127.0.0.1"}
    gateways = [p.host_ports["http"] for p in plan.pods if p.app == "gateway"]
    assert gateways == [8080, 8081]
    assert [p.host_ports for p in plan.pods if p.app == "feature"] == [{"grpc": 50051}, {}]


def test_the_dataset_is_mounted_read_only_into_the_trainer_only(plan: Plan,
                                                                tmp_path: Path) -> None:
    (trainer,) = pods(plan, "trainer")
    container = trainer["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "dataset")
    assert mount == {"name": "dataset", "mountPath": DATASET_MOUNT, "readOnly": True}
    volume = next(v for v in trainer["spec"]["volumes"] if v["name"] == "dataset")
    assert volume["hostPath"]["path"] == str(tmp_path.resolve())
    configmap = next(d for d in plan.documents if d["metadata"]["name"] ==
                     container["envFrom"][0]["configMapRef"]["name"])
    assert configmap["data"]["TRAINER_DATASET"] == f"{DATASET_MOUNT}/labels.csv"
    others = [p for p in plan.pods if p.app != "trainer"]
    assert all(v["name"] != "dataset" for p in others for v in p.document["spec"]["volumes"])


def test_what_needs_a_cluster_is_listed_not_run(plan: Plan) -> None:
    kinds = {entry.split("/")[0] for entry in plan.not_run}
    assert kinds == {"Namespace", "Service", "NetworkPolicy", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget", "Ingress"}


def test_another_project_gets_other_names_and_ports() -> None:
    objects = rendered()
    other = adapt(objects, generated_secrets(objects),
                  Options(project="t1", subnet="10.89.65.0/24", gateway_port=18080,
                          feature_port=None))
    assert all(p.name.startswith("t1-") for p in other.pods)
    assert all(name.startswith("t1-") for name in [*other.secrets, *other.claims])
    assert [p.host_ports for p in other.pods if p.app == "feature"] == [{}, {}]
    assert all(a.startswith("10.89.65.") for a in other.addresses)


def test_the_trainer_pod_mounts_its_tasks_from_a_configmap_that_is_played(plan: Plan) -> None:
    (trainer,) = pods(plan, "trainer")
    maps = {d["metadata"]["name"]: d for d in plan.documents if d["kind"] == "ConfigMap"}
    (volume,) = [v for v in trainer["spec"]["volumes"] if "configMap" in v]
    assert "tasks.toml" in maps[volume["configMap"]["name"]]["data"]
