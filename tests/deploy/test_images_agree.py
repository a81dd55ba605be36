"""What `make images` builds (tools/images.py), the Dockerfiles, the overlays and the tool
that runs the local overlay as pods (tools/kube_local.py) agree: image names and tags,
the extractor each feature image carries, the build arguments, the ports, and the paths
the images and the env files share. Fast, and needs no container engine: the container
tier (`make test-containers`) runs the images themselves."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.dockerfiles import DOCKER, IMAGES, global_args, stages
from tests.deploy.manifests import K8S, configmap, container_env, containers, workloads
from tests.support import ROOT
from tools.base_images import BUILD_ARGS
from tools.containers import CONTAINERS_CONF, version
from tools.images import FEATURE_VARIANTS, REPOSITORIES, tags
from tools.kube_local import PUBLISHED, Options, adapt, generated_secrets
from tools.local_up import render

OVERLAY_VARIANT = {"local": "cpu", "gpu": "cuda"}


def final_env(image: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in stages(DOCKER / f"{image}.Dockerfile")[-1].args("ENV"):
        env.update(word.split("=", 1) for word in shlex.split(value))
    return env


def exposed(image: str) -> set[int]:
    return {int(p) for e in stages(DOCKER / f"{image}.Dockerfile")[-1].args("EXPOSE")
            for p in e.split()}


def container(overlay: str, name: str) -> dict:
    workload = next(w for w in workloads(overlay) if w["metadata"]["name"] == name)
    return next(containers(workload, init=False))


def test_the_tool_builds_one_image_per_dockerfile() -> None:
    assert set(REPOSITORIES) == set(IMAGES)
    assert {p.name.removesuffix(".Dockerfile") for p in DOCKER.glob("*.Dockerfile")} == set(IMAGES)
    for image in IMAGES:
        assert (DOCKER / f"{image}.Dockerfile.dockerignore").is_file()


def test_the_local_overlay_runs_the_dev_tags() -> None:
    for image in IMAGES:
        assert container("local", image)["image"] == tags(image, "cpu")[1]


def test_the_gpu_overlay_runs_the_version_tags_from_a_registry() -> None:
    kustomization = yaml.safe_load((K8S / "overlays" / "gpu" / "kustomization.yaml").read_text())
    for entry in kustomization["images"]:
        image = entry["name"].removeprefix("hitl-")
        repository, tag = tags(image, "cuda")[0].split(":")
        assert entry["newName"].endswith("/" + repository) and entry["newTag"] == tag
    assert version() == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.parametrize("overlay", sorted(OVERLAY_VARIANT))
def test_each_feature_image_carries_the_extractor_its_overlay_runs(overlay: str) -> None:
    extractor = FEATURE_VARIANTS[OVERLAY_VARIANT[overlay]]["EXTRACTOR"]
    assert configmap(overlay, "feature-config")["data"]["FEATURE_EXTRACTOR"] == extractor
    assert final_env("feature")["FEATURE_EXTRACTOR"] == "${EXTRACTOR}"


def test_the_build_arguments_the_tool_passes_are_declared() -> None:
    for image in IMAGES:
        declared = global_args(DOCKER / f"{image}.Dockerfile")
        bases = {s.base for s in stages(DOCKER / f"{image}.Dockerfile")}
        # Every upstream base can be replaced by a Debian-made one.
        for arg in BUILD_ARGS.values():
            if arg in declared:
                assert declared[arg] in bases, (image, arg)
        assert "BASE_IMAGE" in declared
        assert ("NODE_IMAGE" in declared) == any(s.name == "npm" for s in
                                                 stages(DOCKER / f"{image}.Dockerfile"))
    assert set(FEATURE_VARIANTS["cpu"]) <= set(global_args(DOCKER / "feature.Dockerfile"))


@pytest.mark.parametrize("overlay", sorted(OVERLAY_VARIANT))
def test_ports_agree(overlay: str) -> None:
    for image in IMAGES:
        ports = {p["name"]: p["containerPort"] for p in container(overlay, image)["ports"]}
        assert set(ports.values()) == exposed(image), (overlay, image)
        if image in PUBLISHED:
            assert PUBLISHED[image] in ports


def test_the_pods_publish_ports_their_images_expose() -> None:
    rendered = render("local")
    plan = adapt(rendered, generated_secrets(rendered), Options())
    for pod in plan.pods:
        for spec in pod.document["spec"]["containers"]:
            assert spec["image"] == tags(pod.app, "cpu")[1]
            published = {p["containerPort"] for p in spec["ports"] if "hostPort" in p}
            assert published <= exposed(pod.app)


@pytest.mark.parametrize("overlay", sorted(OVERLAY_VARIANT))
def test_paths_the_images_and_the_env_files_share(overlay: str) -> None:
    for image in IMAGES:
        spec = container(overlay, image)
        env, baked = container_env(overlay, spec), final_env(image)
        for key in set(env) & set(baked):
            if "$" not in baked[key]:  # FEATURE_EXTRACTOR: the test above
                assert env[key] == baked[key], (overlay, image, key)
        mounts = {m["mountPath"] for m in spec["volumeMounts"]}
        # A read-only root: HOME and every state folder the image names are volumes.
        assert baked["HOME"] in mounts
        for key in ("FEATURE_CACHE_DIR", "TRAINER_DATA_DIR"):
            if key in baked:
                assert baked[key] in mounts and env.get(key, baked[key]) == baked[key]


def test_every_file_the_dockerfiles_copy_exists() -> None:
    for image in IMAGES:
        for stage in stages(DOCKER / f"{image}.Dockerfile"):
            for copy in stage.args("COPY"):
                if copy.startswith("--from="):
                    continue
                for source in shlex.split(copy)[:-1]:
                    assert (ROOT / source).exists(), (image, source)


def test_the_engine_settings_this_machine_needs() -> None:
    conf = tomllib.loads(Path(CONTAINERS_CONF).read_text())
    assert conf["engine"]["runtime"] == "runc" and conf["engine"]["cgroup_manager"] == "cgroupfs"
    assert conf["engine"]["events_logger"] == "file"
    assert {u.split("=")[0] for u in conf["containers"]["default_ulimits"]} == {"nofile",
                                                                              "nproc"}
    make = (ROOT / "Makefile").read_text()
    assert "CONTAINERS_CONF ?= $(CURDIR)/deploy/containers.conf" in make
