"""Every overlay renders, validates against the pinned Kubernetes schemas, and keeps the
properties the deployment relies on (deploy/README.md)."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import re
from typing import Any

import kubernetes_validate
import pytest

from annotation_gateway.config import Config as GatewayConfig
from annotation_gateway.identity import is_loopback, startup_refusal
from hitl import channels
from hitl.auth import Callers
from hitl.config import load
from tests.deploy.manifests import (
    KUBERNETES_VERSIONS,
    OVERLAYS,
    configmap,
    container_env,
    containers,
    get,
    objects,
    pod_spec,
    render,
    workloads,
)

# Workload name -> the Config class whose variables its container reads.
SERVICES = {
    "feature": "feature_service.config",
    "trainer": "trainer_service.config",
    "gateway": "annotation_gateway.config",
}
GRPC_SERVICES = ("feature", "trainer")


def config_class(workload: str) -> type:
    return importlib.import_module(SERVICES[workload]).Config  # type: ignore[no-any-return]


def env_names(cls: type) -> set[str]:
    return {f.metadata["env"] for f in dataclasses.fields(cls) if f.metadata.get("env")}


def loaded_config(overlay: str, workload: dict[str, Any]) -> Any:
    """The service's Config as the pod would load it (Secret values stubbed)."""
    env = container_env(overlay, next(containers(workload, init=False)))
    return load(config_class(workload["metadata"]["name"]),
                {k: ("x" * 16 if v is None else v) for k, v in env.items()})


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_overlay_renders_the_three_services(overlay: str) -> None:
    names = {(w["kind"], w["metadata"]["name"]) for w in workloads(overlay)}
    assert names == {("StatefulSet", "feature"), ("Deployment", "trainer"),
                     ("Deployment", "gateway")}
    assert {o["metadata"].get("namespace") for o in render(overlay)
            if o["kind"] != "Namespace"} == {"hitl"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_pinned_schemas(overlay: str, version: str) -> None:
    for obj in render(overlay):
        try:
            validated = kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {path}: "
                        f"{exc.message} (Kubernetes {version})")
        assert validated == version.rsplit(".", 1)[0]


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    broken = copy.deepcopy(get("local", "StatefulSet", "feature"))
    pod_spec(broken)["containers"][0]["resource"] = {"limits": {"cpu": "1"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_gpu_limit_only_on_the_feature_service_in_the_gpu_overlay(overlay: str) -> None:
    for workload in workloads(overlay):
        for container in containers(workload):
            resources = container.get("resources", {})
            gpus = {k: v for part in ("limits", "requests")
                    for k, v in resources.get(part, {}).items() if "gpu" in k}
            expected = (overlay == "gpu" and workload["metadata"]["name"] == "feature"
                        and container["name"] == "feature")
            if expected:
                assert gpus == {"nvidia.com/gpu": 1}, container["name"]
            else:
                assert not gpus, f"{overlay}: {container['name']} asks for a GPU: {gpus}"


def test_gpu_pods_land_on_the_gpu_pool_and_only_there(overlay: str) -> None:
    for workload in workloads(overlay):
        spec = pod_spec(workload)
        on_gpu = overlay == "gpu" and workload["metadata"]["name"] == "feature"
        tolerations = spec.get("tolerations", [])
        if on_gpu:
            assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists",
                    "effect": "NoSchedule"} in tolerations
        else:
            assert "nodeSelector" not in spec
            assert not [t for t in tolerations if "gpu" in t.get("key", "")]


def test_feature_image_matches_the_node_pool(overlay: str) -> None:
    image = next(containers(get(overlay, "StatefulSet", "feature")))["image"]
    assert image.endswith("-cuda" if overlay == "gpu" else "-cpu"), image
    env = container_env(overlay, next(containers(get(overlay, "StatefulSet", "feature"))))
    assert env["FEATURE_DEVICE"] == ("cuda" if overlay == "gpu" else "cpu")


def test_every_container_has_probes_on_its_own_port(overlay: str) -> None:
    for workload in workloads(overlay):
        name = workload["metadata"]["name"]
        config = loaded_config(overlay, workload)
        for container in containers(workload, init=False):
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{overlay}: {container['name']} lacks {probe}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe not in container:
                    continue
                spec = container[probe]
                if name in GRPC_SERVICES:
                    # The standard gRPC health protocol, which GrpcService serves.
                    assert spec["grpc"]["port"] == config.port, (name, probe)
                else:
                    path = "/readyz" if probe == "readinessProbe" else "/healthz"
                    assert spec["httpGet"]["path"] == path, (name, probe)
                    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                    assert ports[spec["httpGet"]["port"]] == config.port, (name, probe)


def test_no_container_runs_as_root_or_keeps_privileges(overlay: str) -> None:
    for workload in workloads(overlay):
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, workload["metadata"]["name"]
        assert pod.get("runAsUser", 1) != 0
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        for container in containers(workload):
            sc = container.get("securityContext", {})
            assert sc.get("runAsUser", pod.get("runAsUser")) not in (0, None), container["name"]
            assert sc.get("runAsNonRoot", True) is True
            assert sc.get("privileged", False) is False
            assert sc.get("allowPrivilegeEscalation") is False, container["name"]
            assert sc.get("readOnlyRootFilesystem") is True, container["name"]
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
            assert not sc.get("capabilities", {}).get("add")


def test_writable_paths_are_volumes(overlay: str) -> None:
    """With a read-only root, every directory a service writes must be a mounted volume."""
    for workload in workloads(overlay):
        config = loaded_config(overlay, workload)
        container = next(containers(workload, init=False))
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts
        writes = [getattr(config, f) for f in ("cache_dir", "data_dir") if hasattr(config, f)]
        for path in writes:
            assert any(path == m or path.startswith(m + "/") for m in mounts), (
                f"{overlay}: {workload['metadata']['name']} writes {path}, not on a volume")


def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for workload in workloads(overlay):
        for container in containers(workload):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(part, {}), (
                        f"{overlay}: {container['name']} has no {part}.{resource}")


def test_configmap_variables_are_the_services_settings(overlay: str) -> None:
    """Same names as `make run` (tools/run_local.py) and valid values: loading the
    service's own Config from the pod's environment succeeds."""
    for workload in workloads(overlay):
        name = workload["metadata"]["name"]
        cls = config_class(name)
        for container in containers(workload, init=False):
            assert container.get("envFrom"), f"{name}: config must come from a ConfigMap"
            env = container_env(overlay, container)
            unknown = set(env) - env_names(cls)
            assert not unknown, f"{overlay}: {name} sets variables its Config lacks: {unknown}"
            config = loaded_config(overlay, workload)
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports["metrics"] == config.metrics_port
            assert ports.get("grpc", ports.get("http")) == config.port


def test_prometheus_scrapes_every_pod_on_its_metrics_port(overlay: str) -> None:
    for workload in workloads(overlay):
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        config = loaded_config(overlay, workload)
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(config.metrics_port)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_metrics_listen_beyond_loopback_in_the_pod_for_the_scraper(overlay: str) -> None:
    """Off Kubernetes a metrics port listens on loopback (the default); in the pod it must
    take the scraper's connections (which the `metrics` NetworkPolicy alone admits).
    Seen failing before the setting existed."""
    for workload in workloads(overlay):
        config = loaded_config(overlay, workload)
        assert config.metrics_host in ("0.0.0.0", "::"), workload["metadata"]["name"]
        assert config_class(workload["metadata"]["name"])().metrics_host == "127.0.0.1"


def test_termination_grace_outlasts_each_services_graceful_stop(overlay: str) -> None:
    for workload in workloads(overlay):
        config = loaded_config(overlay, workload)
        grace = pod_spec(workload)["terminationGracePeriodSeconds"]
        assert grace > config.grace_s + 5, (workload["metadata"]["name"], grace, config.grace_s)


def test_trainer_is_a_single_writer_with_a_volume(overlay: str) -> None:
    trainer = get(overlay, "Deployment", "trainer")
    assert trainer["spec"]["replicas"] == 1
    assert trainer["spec"]["strategy"] == {"type": "Recreate"}
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod_spec(trainer)["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == ["trainer-data"]
    pvc = get(overlay, "PersistentVolumeClaim", "trainer-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not [h for h in objects(overlay, "HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"]["name"] == "trainer"]


def test_feature_replicas_each_own_a_cache_volume(overlay: str) -> None:
    feature = get(overlay, "StatefulSet", "feature")
    templates = feature["spec"]["volumeClaimTemplates"]
    assert [t["metadata"]["name"] for t in templates] == ["cache"]
    assert templates[0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"]
              for m in next(containers(feature, init=False))["volumeMounts"]}
    assert mounts["cache"] == loaded_config(overlay, feature).cache_dir


def test_clients_balance_over_feature_replicas_through_a_headless_service(
        overlay: str) -> None:
    feature = get(overlay, "StatefulSet", "feature")
    service = get(overlay, "Service", "feature")
    assert service["spec"]["clusterIP"] == "None"
    assert feature["spec"]["serviceName"] == "feature"
    assert service["spec"]["selector"].items() <= (
        feature["spec"]["template"]["metadata"]["labels"].items())
    grpc_port = service["spec"]["ports"][0]["port"]
    for workload, variable in (("trainer", "TRAINER_FEATURE_ADDR"),
                               ("gateway", "GATEWAY_FEATURE_ADDR")):
        env = container_env(overlay, next(containers(get(overlay, "Deployment", workload))))
        assert env[variable] == f"dns:///feature:{grpc_port}", variable
    config = json.loads(channels.service_config("hitl.v1.FeatureService"))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]


def test_services_select_their_pods_and_name_existing_ports(overlay: str) -> None:
    for service in objects(overlay, "Service"):
        selected = [w for w in workloads(overlay) if service["spec"]["selector"].items()
                    <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, service["metadata"]["name"]
        ports = {p["name"] for p in next(containers(selected[0], init=False))["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


def test_autoscalers_and_disruption_budgets_point_at_real_workloads(overlay: str) -> None:
    by_name = {(w["kind"], w["metadata"]["name"]): w for w in workloads(overlay)}
    hpas = {h["metadata"]["name"]: h for h in objects(overlay, "HorizontalPodAutoscaler")}
    assert set(hpas) == {"feature", "gateway"}
    for hpa in hpas.values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) in by_name
    gateway_metric = hpas["gateway"]["spec"]["metrics"][0]
    assert gateway_metric["resource"]["name"] == "cpu"
    feature_metric = hpas["feature"]["spec"]["metrics"][0]
    assert feature_metric["type"] == "Pods"
    pdbs = objects(overlay, "PodDisruptionBudget")
    assert {p["metadata"]["name"] for p in pdbs} == {"feature", "gateway"}
    for pdb in pdbs:
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert [w for w in by_name.values()
                if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]


def test_the_gateway_has_what_serving_beyond_loopback_takes(overlay: str) -> None:
    """Bound to every interface, the gateway refuses to start without annotator tokens, a
    session secret and its host names: each overlay gives all three, the secrets from
    Secrets (generated in the local overlay, made by hand for the gpu one)."""
    gateway = next(containers(get(overlay, "Deployment", "gateway")))
    env = container_env(overlay, gateway)
    from_secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in gateway["env"]
                    if "valueFrom" in e}
    session = from_secrets["GATEWAY_SESSION_SECRET"]
    # Generated Secrets (the local overlay's) get a hash of their content in the name.
    assert session["key"] == "secret"
    assert re.fullmatch(r"gateway-session(-[a-z0-9]{10})?", session["name"])
    assert not {"GATEWAY_SESSION_SECRET", "GATEWAY_ANNOTATOR_TOKENS"} & set(
        configmap(overlay, "gateway-config")["data"])
    # Values from Secrets are not in the manifests: stand-ins of a valid length.
    config = load(GatewayConfig, {k: v if v is not None else "x" * 40 for k, v in env.items()})
    assert not is_loopback(config.host)
    mount = {m["mountPath"]: m for m in gateway["volumeMounts"]}[config.annotator_tokens_dir]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod_spec(get(overlay, "Deployment", "gateway"))["volumes"]
                 if v["name"] == mount["name"]]
    assert re.fullmatch(r"gateway-annotators(-[a-z0-9]{10})?", volume["secret"]["secretName"])
    rendered = {re.sub(r"-[a-z0-9]{10}$", "", s["metadata"]["name"]): s
                for s in objects(overlay, "Secret")}
    assert ({"gateway-annotators", "gateway-session"} <= set(rendered)) == (overlay == "local")
    # The annotators: the local Secret's keys; the gpu overlay's admin, as its README says.
    names = (set(rendered["gateway-annotators"]["data"]) if overlay == "local" else {"admin"})
    annotators = Callers.from_pairs([(name, "x" * 16) for name in names])
    assert startup_refusal(config, annotators) is None
    (ingress,) = objects(overlay, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] in config.allowed_hosts


def test_grpc_services_authenticate_callers_from_a_secret_without_reflection(
        overlay: str) -> None:
    """Each gRPC service reads its callers' tokens from the Secret grpc-callers (the
    trainer only the gateway's and the admin's), the clients present theirs from the same
    Secret, and reflection is off."""
    secret_names = set()
    for kind, name, readable in (("StatefulSet", "feature", None),
                                 ("Deployment", "trainer", {"gateway", "admin"})):
        workload = get(overlay, kind, name)
        config = loaded_config(overlay, workload)
        assert config.reflection is False, name
        container = next(containers(workload, init=False))
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        mount = mounts[config.caller_tokens_dir]
        assert mount.get("readOnly") is True
        (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
        secret_names.add(volume["secret"]["secretName"])
        items = {i["key"] for i in volume["secret"].get("items", [])} or None
        assert items == readable, (name, items)
        assert "TRAINER_CALLER_TOKENS" not in container_env(overlay, container)
    for kind, name, variable, key in (("Deployment", "trainer", "TRAINER_FEATURE_TOKEN",
                                       "trainer"),
                                      ("Deployment", "gateway", "GATEWAY_GRPC_TOKEN",
                                       "gateway")):
        container = next(containers(get(overlay, kind, name)))
        (entry,) = [e for e in container["env"] if e["name"] == variable]
        assert entry["valueFrom"]["secretKeyRef"]["key"] == key
        secret_names.add(entry["valueFrom"]["secretKeyRef"]["name"])
    (secret_name,) = secret_names
    rendered = [s for s in objects(overlay, "Secret") if s["metadata"]["name"] == secret_name]
    # A development Secret in the local overlay; made by hand for the gpu overlay.
    assert bool(rendered) == (overlay == "local")
    if rendered:
        assert {"trainer", "gateway", "admin"} <= set(rendered[0]["data"])


def test_ingress_routes_to_the_gateway_service(overlay: str) -> None:
    (ingress,) = objects(overlay, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = get(overlay, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_every_image_is_mapped_to_a_tagged_build(overlay: str) -> None:
    for workload in workloads(overlay):
        for container in containers(workload):
            image = container["image"]
            repository, _, tag = image.rpartition(":")
            assert repository and "/" in repository, f"{overlay}: unmapped image {image}"
            assert tag and tag != "latest", f"{overlay}: {image} is not pinned to a tag"
            assert container["imagePullPolicy"] == "IfNotPresent"


def test_feature_autoscaler_metric_comes_from_what_the_service_exports(overlay: str) -> None:
    """HPA metric <- prometheus-adapter rule <- a series the feature service exports."""
    import prometheus_client
    import yaml

    import feature_service.metrics  # noqa: F401 - registers the service's metrics
    from tests.deploy.manifests import K8S

    rules = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    published = {}
    for rule in rules["rules"]["custom"]:
        series = rule["seriesQuery"].split("{")[0]
        assert re.fullmatch(rule["name"]["matches"].strip("^$"), series)
        reads = {series, *re.findall(r"\b(feature_\w+)\{", rule["metricsQuery"])}
        published[rule["name"]["as"]] = reads
    exported = {sample.name for family in prometheus_client.REGISTRY.collect()
                for sample in family.samples}
    for name, reads in published.items():
        assert reads <= exported, f"adapter rule {name} reads {reads - exported}"
    hpa = get(overlay, "HorizontalPodAutoscaler", "feature")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] in published


def test_deploy_readme_table_covers_every_variable_the_manifests_set(overlay: str) -> None:
    from tests.deploy.manifests import K8S

    table = "\n".join(line for line in (K8S.parent / "README.md").read_text().splitlines()
                      if line.startswith("| "))
    for workload in workloads(overlay):
        for name in container_env(overlay, next(containers(workload, init=False))):
            assert name in table, f"deploy/README.md's table lacks {name}"


async def test_gateway_probe_paths_are_routes_of_the_gateway() -> None:
    from annotation_gateway import server

    app = server.init_app(config_class("gateway")())
    routes = {r.resource.canonical for r in app.router.routes()
              if r.method == "GET" and r.resource is not None}
    gateway = next(containers(get("local", "Deployment", "gateway")))
    for probe in ("readinessProbe", "livenessProbe"):
        assert gateway[probe]["httpGet"]["path"] in routes, probe


def test_the_feature_cache_cap_fits_its_volume(overlay: str) -> None:
    feature = get(overlay, "StatefulSet", "feature")
    env = container_env(overlay, next(containers(feature)))
    storage = feature["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"][
        "storage"]
    assert storage.endswith("Gi"), storage
    # Room is left for LMDB's own pages and the model files' neighbours on the volume.
    assert 0 < int(env["FEATURE_CACHE_MAX_BYTES"]) <= 0.85 * int(storage[:-2]) * 2**30


def test_the_trainer_reads_its_tasks_from_a_configmap_it_mounts(overlay: str) -> None:
    from pathlib import PurePosixPath

    from trainer_service.tasks.file import parse_tasks
    from trainer_service.tasks.spec import settings_task

    trainer = get(overlay, "Deployment", "trainer")
    config = loaded_config(overlay, trainer)
    path = PurePosixPath(config.tasks_file)
    (container,) = containers(trainer, init=False)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    assert mount.get("readOnly") is True
    volume = next(v for v in pod_spec(trainer)["volumes"] if v["name"] == mount["name"])
    tasks = configmap(overlay, "trainer-tasks")
    assert volume["configMap"]["name"] == tasks["metadata"]["name"]
    declared = parse_tasks(tasks["data"][path.name], settings_task(config), "trainer-tasks")
    assert declared.default in {t.name for t in declared.tasks}
