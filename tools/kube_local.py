"""The rendered manifests as `podman kube play` (podman 4.3) runs them: what that runtime
needs changed, applied to the rendered objects; the manifests themselves stay as written.

- Workloads become Pods: one per replica (`<project>-<workload>-<i>`), each with its
  StatefulSet claim (`<claim>-<workload>-<i>`, as Kubernetes names it) and a restart
  policy; ConfigMaps pass as they are.
- Services become /etc/hosts entries: every pod gets a fixed address on the project's
  network, and each Service's names (`feature`, `feature.hitl.svc.cluster.local`, ...)
  list the addresses of the pods it selects, as DNS answers for a headless Service.
- Secrets become podman secrets: a flat map of base64 values for `secretKeyRef`, and,
  for each secret volume, one secret per pod and volume holding its items under `data`
  with their values as they are (podman 4.3 writes them to the files undecoded, and
  names the volume after the secret, so two pods mounting different items of one Secret
  would otherwise share a volume); `optional: false` on each.
- emptyDir volumes get the pod's name (podman names them after the volume, so every pod's
  `tmp` would otherwise be one shared volume); claims get the project's prefix.
- Host ports, on loopback: the gateways' `http` (the page, one port per replica) and the
  first feature replica's `grpc` (other teams' clients). podman 4.3 publishes every other
  container port too, on every interface at its own number (so two replicas collide):
  those get a free loopback port each.
- The offline demo: a dataset folder of this machine mounted read-only into the trainer,
  and TRAINER_DATASET pointing at it, set in the trainer's ConfigMap (podman 4.3 lets
  `envFrom` override a container's own `env`).

Services, NetworkPolicies, HPAs, PDBs, Ingresses and the Namespace need a cluster; they
are listed as not run (tests/deploy checks them on the rendered YAML)."""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.probes import free_port

Obj = dict[str, Any]
WORKLOADS = ("Deployment", "StatefulSet")
DATASET_MOUNT = "/data/dataset"
# The container port each app publishes on the host, by port name.
PUBLISHED = {"gateway": "http", "feature": "grpc"}


@dataclass
class Options:
    project: str = "hitl"  # prefixes pod, secret, volume and network names
    subnet: str = "10.89.64.0/24"
    first_address: int = 10  # the pods' addresses count up from this host number
    host_ip: str = "127.0.0.1"
    gateway_port: int = 8080  # the first gateway's; the next replicas count up
    feature_port: int | None = 50051  # the first feature replica's gRPC; None: none
    dataset: Path | None = None  # a CSV manifest or a folder on this machine


@dataclass
class Pod:
    name: str
    app: str  # the workload it is a replica of
    address: str
    document: Obj
    host_ports: dict[str, int] = field(default_factory=dict)  # port name -> host port


@dataclass
class Plan:
    documents: list[Obj]  # for `podman kube play`, pods in the order of `addresses`
    pods: list[Pod]
    secrets: dict[str, str]  # podman secret name -> content
    claims: list[str]  # named volumes that stand for PersistentVolumeClaims
    not_run: list[str]  # Kind/name of what only a cluster runs

    @property
    def addresses(self) -> list[str]:
        return [p.address for p in self.pods]


def generated_secrets(rendered: list[Obj]) -> dict[str, dict[str, str]]:
    """Fresh values for every key of every rendered Secret: what the manifests say
    exists, never the development values committed in an overlay."""
    return {o["metadata"]["name"]: {key: secrets.token_hex(32 if key == "secret" else 24)
                                    for key in {**o.get("data", {}), **o.get("stringData", {})}}
            for o in rendered if o["kind"] == "Secret"}


def replicas(workload: Obj, project: str) -> Iterator[tuple[str, Obj]]:
    """(pod name, Pod) for each replica of a Deployment or StatefulSet."""
    name, spec = workload["metadata"]["name"], workload["spec"]
    template = spec["template"]
    for index in range(spec.get("replicas", 1)):
        pod_spec = copy.deepcopy(template["spec"])
        pod_spec.setdefault("restartPolicy", "Always")
        for claim in spec.get("volumeClaimTemplates", []):
            claim_name = claim["metadata"]["name"]
            pod_spec.setdefault("volumes", []).append(
                {"name": claim_name,
                 "persistentVolumeClaim": {"claimName": f"{claim_name}-{name}-{index}"}})
        metadata = {key: copy.deepcopy(value) for key, value in template["metadata"].items()
                    if key in ("labels", "annotations")}
        pod_name = f"{project}-{name}-{index}"
        yield pod_name, {"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": pod_name, **metadata}, "spec": pod_spec}


def containers(pod: Obj) -> list[Obj]:
    return [*pod["spec"].get("containers", []), *pod["spec"].get("initContainers", [])]


def rename_volume(pod: Obj, old: str, new: str) -> None:
    for volume in pod["spec"].get("volumes", []):
        if volume["name"] == old:
            volume["name"] = new
    for container in containers(pod):
        for mount in container.get("volumeMounts", []):
            if mount["name"] == old:
                mount["name"] = new


def flat(values: dict[str, str]) -> str:
    return json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in values.items()})


def adapt_volumes(pod: Pod, values: dict[str, dict[str, str]], options: Options,
                  plan: Plan) -> None:
    for volume in list(pod.document["spec"].get("volumes", [])):
        name = volume["name"]
        if "emptyDir" in volume:
            rename_volume(pod.document, name, f"{pod.name}-{name}")
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]
            claim["claimName"] = f"{options.project}-{claim['claimName']}"
            plan.claims.append(claim["claimName"])
        elif "secret" in volume:
            source = volume["secret"]
            data = values[source["secretName"]]
            items = source.pop("items", None) or [{"key": k, "path": k} for k in data]
            source["secretName"] = f"{pod.name}-{name}"
            source["optional"] = False
            plan.secrets[source["secretName"]] = json.dumps(
                {"data": {item["path"]: data[item["key"]] for item in items}})


def adapt_env(pod: Pod, values: dict[str, dict[str, str]], options: Options,
              plan: Plan) -> None:
    for container in containers(pod.document):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                plan.secrets[f"{options.project}-{ref['name']}"] = flat(values[ref["name"]])
                ref["name"] = f"{options.project}-{ref['name']}"


def publish(pod: Pod, index: int, options: Options) -> None:
    first = {"gateway": options.gateway_port, "feature": options.feature_port}.get(pod.app)
    if first is None or (pod.app == "feature" and index > 0):
        return
    for container in pod.document["spec"]["containers"]:
        for port in container.get("ports", []):
            if port.get("name") == PUBLISHED[pod.app]:
                port["hostPort"], port["hostIP"] = first + index, options.host_ip
                pod.host_ports[port["name"]] = first + index


def loopback_ports(pods: list[Pod], host_ip: str) -> None:
    """A free loopback port for each container port not published on purpose."""
    taken = {port for pod in pods for port in pod.host_ports.values()}
    for pod in pods:
        for container in pod.document["spec"]["containers"]:
            for port in container.get("ports", []):
                while "hostPort" not in port:
                    candidate = free_port()
                    if candidate not in taken:
                        taken.add(candidate)
                        port["hostPort"], port["hostIP"] = candidate, host_ip


def mount_dataset(pod: Pod, dataset: Path, configmaps: list[Obj]) -> None:
    dataset = dataset.resolve()
    folder = dataset if dataset.is_dir() else dataset.parent
    inside = DATASET_MOUNT if dataset.is_dir() else f"{DATASET_MOUNT}/{dataset.name}"
    pod.document["spec"].setdefault("volumes", []).append(
        {"name": "dataset", "hostPath": {"path": str(folder), "type": "Directory"}})
    container = pod.document["spec"]["containers"][0]
    container.setdefault("volumeMounts", []).append(
        {"name": "dataset", "mountPath": DATASET_MOUNT, "readOnly": True})
    sources = {s["configMapRef"]["name"] for s in container.get("envFrom", [])}
    for configmap in configmaps:
        if configmap["metadata"]["name"] in sources:
            configmap["data"]["TRAINER_DATASET"] = inside


def selects(selector: dict[str, str], pod: Obj) -> bool:
    labels = pod["metadata"].get("labels", {})
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def host_aliases(services: list[Obj], pods: list[Pod]) -> list[Obj]:
    aliases = []
    for service in services:
        name, namespace = service["metadata"]["name"], service["metadata"].get("namespace")
        names = [name] + ([f"{name}.{namespace}", f"{name}.{namespace}.svc",
                           f"{name}.{namespace}.svc.cluster.local"] if namespace else [])
        selector = service["spec"].get("selector", {})
        aliases += [{"ip": p.address, "hostnames": names} for p in pods
                    if selects(selector, p.document)]
    return aliases


def adapt(rendered: list[Obj], values: dict[str, dict[str, str]], options: Options) -> Plan:
    """The Plan that runs `rendered` (kustomize's output) with the Secret values given."""
    plan = Plan([o for o in rendered if o["kind"] == "ConfigMap"], [], {}, [], [])
    network = ipaddress.ip_network(options.subnet)
    for workload in (o for o in rendered if o["kind"] in WORKLOADS):
        app = workload["metadata"]["name"]
        for index, (name, document) in enumerate(replicas(workload, options.project)):
            address = str(network[options.first_address + len(plan.pods)])
            pod = Pod(name, app, address, document)
            adapt_volumes(pod, values, options, plan)
            adapt_env(pod, values, options, plan)
            publish(pod, index, options)
            if app == "trainer" and options.dataset is not None:
                mount_dataset(pod, options.dataset, plan.documents)
            plan.pods.append(pod)
    loopback_ports(plan.pods, options.host_ip)
    aliases = host_aliases([o for o in rendered if o["kind"] == "Service"], plan.pods)
    for pod in plan.pods:
        pod.document["spec"]["hostAliases"] = copy.deepcopy(aliases)
        plan.documents.append(pod.document)
    plan.not_run = [f"{o['kind']}/{o['metadata']['name']}" for o in rendered
                    if o["kind"] not in (*WORKLOADS, "ConfigMap", "Secret",
                                         "PersistentVolumeClaim")]
    return plan
