"""Renders the kustomize overlays with the pinned kubectl and indexes what comes out."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("local", "gpu")
# Every rendered object must satisfy the schemas of the oldest Kubernetes the manifests
# support (1.29: gRPC probes and StatefulSet claim retention are on by default) and of
# the newest that kubernetes-validate (pinned) carries.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def tool(name: str) -> str:
    """A tool from the project's environment (pinned wheel), else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run `make install` (requirements/dev.txt pins it)")
    return found


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    path = K8S / "overlays" / overlay
    done = subprocess.run([tool("kubectl"), "kustomize", str(path)], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def objects(overlay: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [o for o in render(overlay) if kind is None or o["kind"] == kind]


def get(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects(overlay, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: expected one {kind}/{name}, found {len(found)}"
    return found[0]


def configmap(overlay: str, name: str) -> dict[str, Any]:
    """A generated ConfigMap by its base name (the generator appends a content hash)."""
    found = [c for c in objects(overlay, "ConfigMap")
             if c["metadata"]["name"].rsplit("-", 1)[0] == name]
    assert len(found) == 1, f"{overlay}: expected one ConfigMap {name}-<hash>"
    return found[0]


def workloads(overlay: str) -> list[dict[str, Any]]:
    return [o for o in render(overlay) if o["kind"] in WORKLOADS]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def containers(workload: dict[str, Any], init: bool = True) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("containers", [])
    if init:
        yield from spec.get("initContainers", [])


def container_env(overlay: str, container: dict[str, Any]) -> dict[str, str | None]:
    """Every variable the container gets: ConfigMaps through envFrom, then `env` (values
    from a Secret are None: they are not in the manifests)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        found = [c for c in objects(overlay, "ConfigMap") if c["metadata"]["name"] == ref]
        assert found, f"{container['name']}: ConfigMap {ref} is not rendered"
        env.update(found[0].get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env
